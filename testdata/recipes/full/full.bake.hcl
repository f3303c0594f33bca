# The full fixture: every block and attribute, and every kind of layer
# source and base image. recipes/load_test.go checks what it evaluates to.
variable "version" {
  type        = string
  description = "Version to bake."
  default     = "1.4.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.version))
    error_message = "The version must look like 1.2.3."
  }
}

variable "stages" {
  type    = list(string)
  default = ["dev", "staging", "prod"]
}

variable "port" {
  type    = number
  default = 8080
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "api_token" {
  type      = string
  default   = "not-a-secret"
  sensitive = true
}

# Locals may refer to locals defined later, in any locals block.
locals {
  image_version = "${local.prefix}${var.version}"
  notes_sha     = sha256(file("NOTES.txt"))
}

locals {
  prefix = "v"
  user   = format("%d:%d", 1000, 1000)
}

recipe "full" {
  version     = var.version
  stages      = var.stages
  description = trimspace(file("NOTES.txt"))
}

container "web" {
  base       = "oci:./layout:base"
  repository = "127.0.0.1:5000/team/web"

  layer {
    source      = "app/"
    destination = "/app/"
    mode        = "0755"
    uid         = 1000
    gid         = 1000
  }
  layer {
    source      = "app/config.toml"
    destination = "/etc/web/"
    mode        = 644
  }
  layer {
    source      = "rootfs.tar"
    destination = "/"
  }

  env = {
    VERSION   = local.image_version
    NOTES_SHA = local.notes_sha
    PORT      = var.port
  }
  entrypoint    = ["/app/hello"]
  cmd           = ["--listen", ":${var.port}"]
  workdir       = "/app"
  user          = local.user
  labels        = merge({ "org.opencontainers.image.title" = "web" }, var.labels)
  exposed_ports = [var.port, "53/udp"]
  platforms     = ["linux/amd64", "linux/arm64"]
}

container "tools" {
  base      = "alpine:3.20"
  platforms = ["linux/arm/v7"]

  layer {
    source      = "app/hello"
    destination = "/usr/local/bin/hello"
  }
}
