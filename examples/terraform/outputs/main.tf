locals {
  images = var.image_factory.images

  # Passes in order, each with its images: what a lab bootstrap applies one after the other.
  passes = [for n in sort(keys(var.image_factory.passes)) : {
    pass   = tonumber(n)
    images = var.image_factory.passes[n].images
  }]

  default_image = coalesce(var.image, try(flatten([for p in local.passes : p.images])[0], null))
  # try(): an unknown name is reported by the precondition below, with the names that exist.
  selected = try(local.images[local.default_image], null)

  # Where a VM's disk comes from, best first: the Proxmox template, else the qcow2 URL with its checksum.
  disk_sources = { for name, i in local.images : name => {
    template_vmid = try(i.proxmox.vmid, null)
    template_node = try(i.proxmox.node, null)
    url           = coalesce(i.qcow2Url, i.releaseAssetUrl, "none")
    # A template built on the node has no file and no sha256 (schemaVersion 2): its template is the source.
    checksum = i.sha256 == null ? null : "sha256:${i.sha256}"
  } }
}

# Fails the plan when a caller asks for an image the stack did not produce, naming the ones it has.
resource "terraform_data" "image_guard" {
  input = local.default_image
  lifecycle {
    precondition {
      condition     = local.default_image == null || contains(keys(local.images), coalesce(local.default_image, "-"))
      error_message = "image ${coalesce(var.image, "-")} is not in the stack outputs; it has: ${join(", ", keys(local.images))}."
    }
  }
}
