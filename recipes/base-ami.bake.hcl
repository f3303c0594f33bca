# The company base image: Amazon Linux 2023, re-encrypted with our key,
# copied to every region we run in and shared with the workload accounts.
# No provision blocks, so the bake needs no SSH: launch, stop, image.
variable "version" {
  type    = string
  default = "1.0.0"
}

variable "kms_key" {
  type        = string
  default     = "alias/bakery-base"
  description = "customer-managed KMS key (must grant the shared accounts)"
}

recipe "base" {
  version     = var.version
  stages      = ["dev", "staging", "prod"]
  description = "encrypted Amazon Linux 2023 base image"
}

machine_image "base" {
  region             = "us-east-1"
  source_ami_ssm     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
  instance_type      = "t3.micro"
  root_volume_size   = 16
  kms_key_id         = var.kms_key
  regions            = ["eu-west-1"]
  region_kms_key_ids = { "eu-west-1" = var.kms_key }
  share_with         = ["111122223333"]
  tags = {
    team = "platform"
  }
}

# Production is shared with the production workload account as well (the
# key's policy must grant it too) and needs someone else's approval first:
# bakery approve base@1.0.0 --for prod (by another AWS identity than the
# promoter's; approvers = [...] in the gate would say whose).
stage "prod" {
  accounts = ["111122223333", "444455556666"]
  gate {
    require_approval = true
  }
}

# The platform team's canary fleet runs the prod base image: one instance,
# replaced red/black on every launch (bakery launch base --stage prod), the
# replaced group kept disabled for bakery rollback.
fleet "prod" {
  region           = "us-east-1"
  instance_type    = "t3.micro"
  min_size         = 1
  max_size         = 2
  desired_capacity = 1
  healthy_timeout  = "10m"
  tags = {
    team = "platform"
  }
}
