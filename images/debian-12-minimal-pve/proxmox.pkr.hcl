# Packer → Proxmox (FR-2), for labs that build on the node itself: clone the template ProxmoxTemplate made from
# debian-12-minimal, boot the clone on the node, provision it with the same Ansible roles over SSH, and convert
# it into a new template. The API token is never in a file or argv: Packer reads it from PROXMOX_TOKEN, which
# the factory sets from the Pulumi secret factory:proxmoxApiToken.
packer {
  required_version = "= 1.9.4"
  required_plugins {
    proxmox = {
      source  = "github.com/hashicorp/proxmox"
      version = "= 1.1.1"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = "= 1.0.3"
    }
  }
}

variable "proxmox_url" {
  type        = string
  description = "https://<node>:8006/api2/json"
}
variable "proxmox_username" {
  type        = string
  description = "API token id: user@realm!tokenid"
}
variable "proxmox_token" {
  type      = string
  sensitive = true
  default   = env("PROXMOX_TOKEN")
}
variable "insecure_skip_tls_verify" {
  type    = bool
  default = false
}
variable "node" {
  type = string
}
variable "clone_vm" {
  type        = string
  description = "name of the template to clone (ProxmoxTemplate's name output; plugin 1.1.1 clones by name)"
}
variable "vm_id" {
  type = number
}
variable "template_name" {
  type = string
}
variable "template_description" {
  type = string
}
variable "bridge" {
  type    = string
  default = "vmbr0"
}
variable "disk_storage" {
  type = string
}
variable "ssh_username" {
  type = string
}
variable "ssh_private_key_file" {
  type = string
}
variable "playbook" {
  type = string
}
variable "ansible_roles_path" {
  type = string
}
variable "extra_vars_file" {
  type = string
}
variable "manifest" {
  type = string
}

source "proxmox-clone" "image" {
  proxmox_url              = var.proxmox_url
  username                 = var.proxmox_username
  token                    = var.proxmox_token
  insecure_skip_tls_verify = var.insecure_skip_tls_verify
  node                     = var.node
  clone_vm                 = var.clone_vm
  vm_id                    = var.vm_id
  full_clone               = true
  template_name            = var.template_name
  template_description     = var.template_description
  cores                    = 2
  memory                   = 2048
  scsi_controller          = "virtio-scsi-single"
  qemu_agent               = true
  cloud_init               = true
  cloud_init_storage_pool  = var.disk_storage
  network_adapters {
    bridge = var.bridge
    model  = "virtio"
  }
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "20m"
}

build {
  sources = ["source.proxmox-clone.image"]

  # As in builder-node: cloud-init may restart sshd after Packer connected; let it finish before Ansible.
  provisioner "shell" {
    inline = ["if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || cloud-init status --long || true; fi"]
  }

  provisioner "ansible" {
    playbook_file    = var.playbook
    user             = var.ssh_username
    use_proxy        = false
    extra_arguments  = ["--extra-vars", "@${var.extra_vars_file}"]
    ansible_env_vars = ["ANSIBLE_ROLES_PATH=${var.ansible_roles_path}", "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_NOCOLOR=1", "ANSIBLE_SSH_RETRIES=3"]
  }

  provisioner "shell" {
    execute_command = "sudo sh -eu '{{ .Path }}'"
    inline = [
      "dpkg-query -W -f='$${Package}\\t$${Version}\\n' | LC_ALL=C sort > /etc/image-factory/pkg-manifest.txt",
      "cloud-init clean --logs --seed",
      "truncate -s 0 /etc/machine-id",
    ]
  }

  # The template's VM id for the factory's outputs (node, vmid, name), as ProxmoxTemplate reports them.
  post-processor "manifest" {
    output     = var.manifest
    strip_path = true
  }
}
