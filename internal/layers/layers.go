// Package layers states govmm's layering rule, and its test checks the
// import graph against it, so the rule stays true as the code grows.
//
// From the bottom up:
//
//	0 platform  vmm/...           KVM, guest memory, buses, PCI, MSI-X,
//	                              IRQ routing, boot, ACPI, legacy devices
//	1 devices   devices/..., zerocopy
//	                              device models and NIC models; they build on
//	                              the platform's packages
//	2 machine   machine           which device backs each --net, built and
//	                              handed to the platform (vmm.Device)
//	3 commands  cmd/..., tests/...
//
// A package may import packages of its own layer or below, never above:
// every arrow points down. Packages under internal/ are helpers (test
// networks, fuzz input) that any layer may use; they import nothing of
// govmm's layers.
package layers

import "strings"

// Module is govmm's module path.
const Module = "github.com/govmm/govmm"

// Names of the layers, bottom first.
var Names = []string{"platform", "devices", "machine", "commands"}

// Helper is the layer of the internal/ helper packages.
const Helper = -1

// Of returns the layer of a package of the module (its import path), or
// false for a path outside the module or one no rule covers.
func Of(importPath string) (int, bool) {
	rel, ok := strings.CutPrefix(importPath, Module+"/")
	if !ok {
		return 0, false
	}
	first, _, _ := strings.Cut(rel, "/")
	switch first {
	case "vmm":
		return 0, true
	case "devices", "zerocopy":
		return 1, true
	case "machine":
		return 2, true
	case "cmd", "tests":
		return 3, true
	case "internal":
		return Helper, true
	}
	return 0, false
}
