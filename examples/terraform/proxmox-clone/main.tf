# Clone a VM from the Proxmox template an image-factory stack registered. Needs the bpg/proxmox provider
# (`tofu init` downloads it from the provider registry, so this module is fmt-checked in CI, not validated).
# The image comes from the same tfvars file as ../outputs (`make consumer-vars STACK=dvnt`).
terraform {
  required_version = ">= 1.3"
  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "0.66.3"
    }
  }
}

module "factory" {
  source        = "../outputs"
  image_factory = var.image_factory
  image         = var.image
}

variable "image_factory" {
  description = "image-factory stack outputs; see ../outputs/variables.tf for the shape"
  type        = any
}

variable "image" {
  type    = string
  default = "debian-12-minimal"
}

variable "vm_name" {
  type = string
}

variable "ssh_public_key" {
  type = string
}

# Endpoint and token come from PROXMOX_VE_ENDPOINT / PROXMOX_VE_API_TOKEN, never from files in the repo.
provider "proxmox" {}

locals {
  source = module.factory.selected_image.source
}

resource "proxmox_virtual_environment_vm" "vm" {
  name      = var.vm_name
  node_name = local.source.template_node
  tags      = ["if-${var.image}", module.factory.selected_image.version]

  clone {
    vm_id = local.source.template_vmid
    full  = true
  }

  agent {
    enabled = true
  }

  initialization {
    ip_config {
      ipv4 {
        address = "dhcp"
      }
    }
    user_account {
      username = "ansible"
      keys     = [var.ssh_public_key]
    }
  }

  lifecycle {
    precondition {
      condition     = local.source.template_vmid != null
      error_message = "${var.image} has no Proxmox template in the stack outputs: enable factory:proxmox and add the proxmox target to its recipe."
    }
  }
}

output "vm_id" {
  value = proxmox_virtual_environment_vm.vm.vm_id
}
