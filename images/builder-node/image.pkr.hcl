# builder-node (FR-5): Packer's qemu builder boots the factory's own Debian 12 image (or any cloud image from
# the base-image catalog) as `disk_image`, seeds cloud-init from a CD labelled cidata, provisions it with
# Ansible over SSH, and leaves a qcow2 that the pipeline checksums, validates and publishes like every image.
# Every value comes from variables the factory writes per build (never secrets: the SSH key is a throw-away
# one made for this build and removed from the image before shutdown).
packer {
  required_version = "= 1.9.4"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = "= 1.0.9"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = "= 1.0.3"
    }
  }
}

variable "image_name" {
  type = string
}
variable "base_image_url" {
  type        = string
  description = "file:// path or http://localhost/... URL of the base qcow2 (FR-9: artifacts come from localhost)"
}
variable "base_image_sha256" {
  type = string
}
variable "output_dir" {
  type = string
}
variable "seed_dir" {
  type        = string
  description = "directory with user-data and meta-data for the cidata CD"
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
variable "ansible_collections_path" {
  type = string
}
variable "build_json" {
  type        = string
  description = "build info written to /etc/image-factory/build.json"
}
variable "extra_vars_file" {
  type = string
}
variable "accelerator" {
  type    = string
  default = "kvm"
  validation {
    condition     = contains(["kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be kvm or tcg (scripts/virt-check.sh decides)."
  }
}
variable "disk_size" {
  type    = string
  default = "8G"
}
variable "memory" {
  type    = number
  default = 2048
}
variable "cpus" {
  type    = number
  default = 2
}
variable "serial_log" {
  type        = string
  description = "the VM's serial console, kept beside the build log; the factory watches it for a guest that hangs"
}
variable "qemu_machine_args" {
  type        = list(list(string))
  description = "the CPU model and entropy device every VM of the factory gets (lib/guestVm.ts says why), as qemuargs pairs"
  default     = []
}

source "qemu" "image" {
  disk_image       = true
  iso_url          = var.base_image_url
  iso_checksum     = "sha256:${var.base_image_sha256}"
  output_directory = var.output_dir
  vm_name          = "${var.image_name}.qcow2"
  format           = "qcow2"
  disk_size        = var.disk_size
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  memory           = var.memory
  cpus             = var.cpus
  headless         = true
  cd_files         = ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
  cd_label         = "cidata"
  # A "-device" here replaces the plugin's default -device list, which for a virtio disk holds only the NIC, and the
  # plugin adds the NIC back (step_run.go, applyUserOverrides): the entropy device costs nothing else.
  qemuargs = concat([["-serial", "file:${var.serial_log}"]], var.qemu_machine_args)

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "30m"
  shutdown_command     = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu.image"]

  provisioner "file" {
    source      = var.build_json
    destination = "/tmp/build.json"
  }

  # Packer may connect while cloud-init is still applying the seed; its set_passwords module (ssh_pwauth)
  # restarts sshd, and an Ansible connection opened during that restart is reset ("kex_exchange_identification:
  # Connection reset", seen in CI). Wait until cloud-init is done; the SSH retries below cover the rest.
  provisioner "shell" {
    inline = ["if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || cloud-init status --long || true; fi"]
  }

  provisioner "ansible" {
    playbook_file   = var.playbook
    user            = var.ssh_username
    use_proxy       = false
    extra_arguments = ["--extra-vars", "@${var.extra_vars_file}"]
    ansible_env_vars = [
      "ANSIBLE_ROLES_PATH=${var.ansible_roles_path}",
      "ANSIBLE_COLLECTIONS_PATH=${var.ansible_collections_path}",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=1",
      "ANSIBLE_SSH_RETRIES=3",
    ]
  }
  provisioner "ansible" {
    # NFR-2: the same playbook again; the factory fails the build unless this run reports changed=0.
    playbook_file   = var.playbook
    user            = var.ssh_username
    use_proxy       = false
    extra_arguments = ["--extra-vars", "@${var.extra_vars_file}"]
    ansible_env_vars = [
      "ANSIBLE_ROLES_PATH=${var.ansible_roles_path}",
      "ANSIBLE_COLLECTIONS_PATH=${var.ansible_collections_path}",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=1",
      "ANSIBLE_SSH_RETRIES=3",
    ]
  }

  # Traceability and a clean first boot: the manifest and build info the validation gate reads, then no trace
  # of this build (its key, cloud-init's state, the machine id) so every VM made from the image is new.
  provisioner "shell" {
    execute_command = "sudo sh -eu '{{ .Path }}'"
    inline = [
      "install -d /etc/image-factory",
      "install -m 0644 /tmp/build.json /etc/image-factory/build.json && rm -f /tmp/build.json",
      "dpkg-query -W -f='$${Package}\\t$${Version}\\n' | LC_ALL=C sort > /etc/image-factory/pkg-manifest.txt",
      "sed -i '/ image-factory-packer-build$/d' /home/${var.ssh_username}/.ssh/authorized_keys",
      "cloud-init clean --logs --seed",
      "truncate -s 0 /etc/machine-id",
      "apt-get clean",
      "fstrim -av || true",
    ]
  }
}
