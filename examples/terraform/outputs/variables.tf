# The whole `pulumi stack output --json` document of an image-factory stack, written as
# image_factory.auto.tfvars.json by `make consumer-vars STACK=<stack>` (scripts/consumer-vars.sh).
# The type is the part of schemas/outputs.schema.json this module relies on; attributes it does not name
# are dropped on conversion, so additions to the contract do not break it.
variable "image_factory" {
  description = "image-factory stack outputs (schemaVersion 2)"
  type = object({
    schemaVersion = number
    lab           = string
    maxPass       = number
    passes        = map(object({ images = list(string) }))
    images = map(object({
      pass            = number
      version         = string
      sha256          = optional(string) # null for a template built on the node (derivedFrom names its source)
      derivedFrom     = optional(string)
      size            = number
      qcow2Url        = optional(string)
      ociRef          = optional(string)
      ociDigest       = optional(string)
      releaseAssetUrl = optional(string)
      reusedFrom      = optional(string)
      proxmox = optional(object({
        node = string
        vmid = number
        name = string
      }))
    }))
  })

  validation {
    condition     = var.image_factory.schemaVersion == 2
    error_message = "This module reads outputs schemaVersion 2; the stack exported another. See schemas/outputs.schema.json for what changed."
  }
  validation {
    condition     = alltrue([for i in values(var.image_factory.images) : can(regex("^[0-9a-f]{64}$", coalesce(i.sha256, i.derivedFrom, "none")))])
    error_message = "Every image needs a 64-hex sha256 (or, built on the node, derivedFrom): the tfvars file is not image-factory output."
  }
}

variable "image" {
  description = "The image a VM clones (defaults to the first image of the lowest pass)."
  type        = string
  default     = null
}
