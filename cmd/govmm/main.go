// Command govmm is a KVM virtual machine monitor with a zero-copy network
// path. See README.md for the design and `govmm --help` for usage.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/alecthomas/kong"
)

// CLI is the command line; kong renders --help from these tags.
type CLI struct {
	LogLevel slog.Level `help:"Log level: debug, info, warn, error." default:"warn" name:"log-level"`

	Run RunCmd `cmd:"" help:"Boot a Linux guest (bzImage + initramfs) with the serial console on stdout."`
}

// usageError marks errors caused by bad input (exit status 2).
type usageError struct{ error }

func main() {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("govmm"),
		kong.Description("govmm boots Linux guests under KVM. Guest networking is virtio-net whose receive path is zero-copy through an emulated Intel 82599 NIC."),
		kong.UsageOnError(),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "govmm:", err)
		os.Exit(2)
	}
	ctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "govmm:", err)
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cli.LogLevel})))
	// Dispatch by hand: kong's ctx.Run prefixes errors with the Go method
	// name, and users should see one plain line.
	switch ctx.Command() {
	case "run":
		err = cli.Run.Run()
	default:
		err = usageError{fmt.Errorf("unknown command %q", ctx.Command())}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "govmm:", err)
		var ue usageError
		var se signalExit
		switch {
		case errors.As(err, &ue):
			os.Exit(2)
		case errors.As(err, &se):
			os.Exit(128 + int(se.sig))
		}
		os.Exit(1)
	}
}
