# The machine_image fixture: every argument and block of a machine_image.
# recipes/machineimage_test.go checks what it evaluates to, and the
# positions of its arguments: keep their lines where they are.
variable "version" {
  type    = string
  default = "2.1.0"
}

recipe "web" {
  version = var.version
  stages  = ["dev", "prod"]
}

machine_image "web" {
  region = "us-east-1"
  source_ami_filter {
    name         = "al2023-ami-*-x86_64"
    owners       = ["amazon", "123456789012"]
    architecture = "x86_64"
    most_recent  = true
    filters      = { "virtualization-type" = "hvm" }
  }
  instance_type        = "c7i.large"
  subnet_id            = "subnet-0123456789abcdef0"
  vpc_id               = "vpc-0123abcd"
  ssh_username         = "admin"
  ssh_host             = "127.0.0.1"
  ssh_port             = 2222
  ssh_timeout          = "90s"
  ssh_private_key_file = "keys/builder.key"
  ssh_source_cidrs     = ["203.0.113.7/32", "2001:db8::/64"]
  user_data_file       = "user-data.yaml"
  root_volume_size     = 16
  root_volume_type     = "io2"
  encrypted            = true
  kms_key_id           = "alias/bakery"
  regions              = ["eu-west-1", "us-gov-west-1"]
  region_kms_key_ids   = { "eu-west-1" = "alias/bakery-eu", "us-gov-west-1" = "alias/bakery-gov" }
  share_with           = ["111122223333"]
  tags                 = { team = "web", "cost-center" = 42 }
  ami_name             = "web-${var.version}"

  provision "file" {
    source      = "files/app.conf"
    destination = "/tmp/app.conf"
  }
  provision "file" {
    source       = "files/site/"
    destination  = "/tmp/site"
    pause_before = "2s"
  }
  provision "shell" {
    inline            = ["sudo mv /tmp/app.conf /etc/app.conf", "sudo reboot"]
    env               = { APP_ENV = "prod", _LEVEL2 = 2 }
    expect_disconnect = true
    pause_before      = "10s"
  }
  provision "shell" {
    script = "scripts/setup.sh"
  }

  timeouts {
    instance = "15m"
    copy     = "3h"
  }
}
