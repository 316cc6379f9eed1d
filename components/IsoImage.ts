// IsoImage: a bootable unattended-install ISO or a NoCloud seed ISO (lib/build/iso.ts), reproducible, published
// through the same pipeline as every image: build key, one streaming sha256, validation gate, evidence.
import type * as pulumi from "@pulumi/pulumi";
import { BuiltImage, type Qcow2ImageArgs } from "./Qcow2Image";

export class IsoImage extends BuiltImage {
    constructor(name: string, args: Qcow2ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:image:IsoImage", name, args, opts);
    }
}
