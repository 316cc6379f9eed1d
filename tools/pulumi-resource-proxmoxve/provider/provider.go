// Package provider bridges bpg's Terraform provider for Proxmox VE (SDKv2 and plugin-framework halves, muxed)
// to Pulumi under the tokens of the npm SDK @muhlba91/pulumi-proxmoxve 8.6.0, so that SDK's resources run
// against this plugin. The upstream plugin module is not served by the module proxy we may use, so we bridge
// the Terraform provider ourselves. Only the resources and data sources the program and the policy pack use are
// mapped; every other one is listed as knowingly unmapped, which keeps the schema small and makes a
// token the program starts using without a mapping fail at `tools/build.sh` time (tfgen), not in a lab.
package provider

import (
	"context"
	"sort"

	"github.com/bpg/terraform-provider-proxmox/fwprovider"
	tfprovider "github.com/bpg/terraform-provider-proxmox/proxmoxtf/provider"
	pfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
)

// Version is what the plugin reports: the npm SDK pins its plugin by this version (package.json "pulumi").
const Version = "8.6.0"

// UpstreamVersion is the Terraform provider module the bridge wraps (tools/pulumi-resource-proxmoxve/go.mod).
const UpstreamVersion = "0.111.1"

// Resources maps Terraform resource types to the Pulumi tokens of the npm SDK 8.6.0. The SDK derives them from
// the Terraform names: `proxmox_<mod>_<name>` -> `proxmoxve:<mod>/<name>:<Name>`, and the legacy
// `proxmox_virtual_environment_<name>` -> `proxmoxve:index/<name>Legacy:<Name>Legacy`.
var Resources = map[string]string{
	"proxmox_download_file":          "proxmoxve:download/file:File",
	"proxmox_virtual_environment_vm": "proxmoxve:index/vmLegacy:VmLegacy",
}

// DataSources maps the Terraform data sources the program reads, likewise: `proxmox_virtual_environment_<name>` ->
// `proxmoxve:index/get<Name>Legacy:get<Name>Legacy` (the cluster's VMs, so a new template's id is one none holds).
var DataSources = map[string]string{
	"proxmox_virtual_environment_vms": "proxmoxve:index/getVmsLegacy:getVmsLegacy",
}

// Info is the bridge's description of the provider. metadata is the bridge-metadata.json that tfgen wrote
// (embedded in the plugin); tfgen itself starts from none.
func Info(metadata []byte) tfbridge.ProviderInfo {
	if len(metadata) == 0 {
		metadata = []byte("{}")
	}
	ctx := context.Background()
	sdk := tfprovider.ProxmoxVirtualEnvironment()
	p := pfbridge.MuxShimWithPF(ctx, shimv2.NewProvider(sdk), fwprovider.New(UpstreamVersion)())

	resources := map[string]*tfbridge.ResourceInfo{}
	for tf, tok := range Resources {
		resources[tf] = &tfbridge.ResourceInfo{Tok: tfbridge.MakeResource("proxmoxve", moduleOf(tok), nameOf(tok))}
	}
	var ignored []string
	p.ResourcesMap().Range(func(key string, _ shim.Resource) bool {
		if _, ok := Resources[key]; !ok {
			ignored = append(ignored, key)
		}
		return true
	})
	dataSources := map[string]*tfbridge.DataSourceInfo{}
	for tf, tok := range DataSources {
		dataSources[tf] = &tfbridge.DataSourceInfo{Tok: tfbridge.MakeDataSource("proxmoxve", moduleOf(tok), nameOf(tok))}
	}
	p.DataSourcesMap().Range(func(key string, _ shim.Resource) bool {
		if _, ok := DataSources[key]; !ok {
			ignored = append(ignored, key)
		}
		return true
	})
	sort.Strings(ignored)

	info := tfbridge.ProviderInfo{
		P:                 p,
		Name:              "proxmox",
		DisplayName:       "Proxmox Virtual Environment (Proxmox VE)",
		Description:       "Proxmox VE resources for image-factory: bpg/terraform-provider-proxmox bridged under the @muhlba91/pulumi-proxmoxve 8.6.0 tokens.",
		License:           "Apache-2.0",
		GitHubOrg:         "bpg",
		Version:           Version,
		TFProviderVersion: UpstreamVersion,
		Config:            map[string]*tfbridge.SchemaInfo{},
		Resources:         resources,
		DataSources:       dataSources,
		IgnoreMappings:    ignored,
		JavaScript:        &tfbridge.JavaScriptInfo{PackageName: "@muhlba91/pulumi-proxmoxve", RespectSchemaVersion: true},
		MetadataInfo:      tfbridge.NewProviderMetadata(metadata),
	}
	// The SDK names `name` inputs automatically like upstream does (random suffix, 255 characters at most).
	info.SetAutonaming(255, "-")
	return info
}

// moduleOf and nameOf split "pkg:module/member:Type" into module and Type.
func moduleOf(tok string) string {
	start := len("proxmoxve:")
	for i := start; i < len(tok); i++ {
		if tok[i] == '/' {
			return tok[start:i]
		}
	}
	return "index"
}

func nameOf(tok string) string {
	for i := len(tok) - 1; i >= 0; i-- {
		if tok[i] == ':' {
			return tok[i+1:]
		}
	}
	return tok
}
