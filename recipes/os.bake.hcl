# A base container that other recipes build on: `base = "recipe:os"` in
# greeter.bake.hcl names the image this recipe bakes. `bakery bake recipes/`
# bakes it first; when it changes, the recipes on it rebake in the same run.
variable "version" {
  type    = string
  default = "1.0.0"
}
recipe "os" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}
container "os" {
  base = "scratch"
  layer {
    source      = "os/"
    destination = "/"
  }
}
