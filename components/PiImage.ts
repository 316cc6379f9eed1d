// PiImage: a Raspberry Pi OS image customised offline (lib/build/pi.ts), published as a flashable .img.xz through
// the same pipeline as every image: build key, one streaming sha256, validation gate, evidence.
import type * as pulumi from "@pulumi/pulumi";
import { BuiltImage, type Qcow2ImageArgs } from "./Qcow2Image";

export class PiImage extends BuiltImage {
    constructor(name: string, args: Qcow2ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:image:PiImage", name, args, opts);
    }
}
