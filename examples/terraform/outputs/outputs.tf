output "lab" {
  value = var.image_factory.lab
}

output "image_sha256" {
  description = "image name => sha256 of its qcow2"
  value       = { for name, i in local.images : name => i.sha256 }
}

output "image_versions" {
  value = { for name, i in local.images : name => i.version }
}

output "disk_sources" {
  description = "image name => Proxmox template (vmid, node) and qcow2 URL with its checksum"
  value       = local.disk_sources
}

output "passes" {
  value = local.passes
}

output "selected_image" {
  value = local.selected == null ? null : {
    name    = local.default_image
    version = local.selected.version
    sha256  = local.selected.sha256
    source  = local.disk_sources[local.default_image]
  }
}
