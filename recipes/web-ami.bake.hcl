# The web tier's AMI: Amazon Linux 2023 with nginx, baked in us-east-1 and
# copied to eu-west-1, with the volume encrypted (the default). Bake it with
# `bakery bake recipes/web-ami.bake.hcl`; an unchanged recipe, source AMI
# and input files are not baked again.
variable "version" {
  type    = string
  default = "1.0.0"
}

recipe "web" {
  version = var.version
  stages  = ["dev", "staging", "prod"]
}

# What each stage asks of an image; dev has no block, so no gate. An image
# spends at least an hour in dev before it may enter staging. Entering prod
# needs someone else's approval (bakery approve web@1.0.0 --for prod, then
# bakery promote web@1.0.0 --to prod by another identity) and puts the AMI in both regions the web tier serves from.
stage "staging" {
  gate {
    min_soak = "1h"
  }
}

stage "prod" {
  regions = ["eu-west-1", "us-west-2"]
  gate {
    require_approval = true
  }
}

machine_image "web" {
  region = "us-east-1"

  # The newest Amazon Linux 2023 image published by Amazon.
  source_ami_filter {
    name        = "al2023-ami-*-x86_64"
    owners      = ["amazon"]
    most_recent = true
    filters = {
      "virtualization-type" = "hvm"
      "root-device-type"    = "ebs"
    }
  }

  instance_type    = "t3.micro"
  ssh_username     = "ec2-user"
  root_volume_size = 16

  regions = ["eu-west-1"]
  tags = {
    team    = "web"
    service = "nginx"
  }

  provision "file" {
    source      = "ami/nginx.conf"
    destination = "/tmp/nginx.conf"
  }

  provision "shell" {
    script = "ami/setup.sh"
    env = {
      APP_VERSION = var.version
    }
  }
}
