# Values for production bakes.
version = "1.4.3"
labels  = { "org.example.env" = "prod" }
