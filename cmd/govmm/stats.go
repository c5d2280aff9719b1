package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/govmm/govmm/machine"
)

// statsWriter writes every NIC's counters as a JSON object
// {"nics":[...]} to path every second and once more at exit. Each write
// goes to a temporary file that is renamed over path, so a reader never
// sees a half-written file.
type statsWriter struct {
	path   string
	source func() []machine.NetStats
	stop   chan struct{}
	done   chan struct{}
}

func startStats(path string, source func() []machine.NetStats) *statsWriter {
	w := &statsWriter{path: path, source: source, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if err := w.write(); err != nil {
					fmt.Fprintln(os.Stderr, "govmm: stats:", err)
				}
			}
		}
	}()
	return w
}

// Close stops the ticker and writes the final counters.
func (w *statsWriter) Close() error {
	close(w.stop)
	<-w.done
	return w.write()
}

func (w *statsWriter) write() error {
	var doc struct {
		Time string             `json:"time"`
		NICs []machine.NetStats `json:"nics"`
	}
	doc.Time = time.Now().UTC().Format(time.RFC3339Nano)
	doc.NICs = append([]machine.NetStats{}, w.source()...)
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(w.path), ".govmm-stats-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), w.path)
}
