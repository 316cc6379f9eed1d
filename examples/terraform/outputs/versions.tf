# No providers on purpose: this module only reads the image-factory outputs contract, so `init`, `validate`,
# `plan` and `apply` run offline. Works with Terraform >= 1.3 (optional object attributes) and OpenTofu.
terraform {
  required_version = ">= 1.3"
}
