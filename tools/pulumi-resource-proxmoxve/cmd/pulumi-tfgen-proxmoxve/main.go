// pulumi-tfgen-proxmoxve writes the plugin's Pulumi schema and bridge metadata (`schema --out DIR`), which
// tools/build.sh embeds into pulumi-resource-proxmoxve: a bridged provider refuses to run without them.
package main

import (
	"github.com/image-factory/tools/pulumi-resource-proxmoxve/provider"
	pftfgen "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"
)

func main() {
	pftfgen.MainWithMuxer("proxmoxve", provider.Info(nil))
}
