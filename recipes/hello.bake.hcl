variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "hello" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}
container "hello" {
  base = "scratch"
  # repository = "127.0.0.1:5000/team/hello"   # omit for the local default
  layer {
    source      = "app/"
    destination = "/app/"
  }
  entrypoint = ["/app/hello"]
}
