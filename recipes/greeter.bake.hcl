# An app container on the base that os.bake.hcl bakes: the link
# "recipe:os" stands for that recipe's image (its digest is part of this
# recipe's bake key, and the image records os@VERSION as its base).
variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "greeter" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}
container "greeter" {
  base = "recipe:os"
  layer {
    source      = "app/"
    destination = "/app/"
  }
  entrypoint = ["/app/hello"]
}
