package harness

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// File is one regular file for an initramfs overlay.
type File struct {
	Path string // absolute or relative path inside the archive; leading "/" is dropped
	Mode fs.FileMode
	Data []byte
}

// CPIOWriter writes a "newc" (SVR4, no CRC) cpio archive, the format the kernel's initramfs unpacker reads.
// The kernel does not create missing parent directories, so WriteFile emits them first.
type CPIOWriter struct {
	w    *bufio.Writer
	ino  uint32
	dirs map[string]bool
	n    int64 // bytes written, for 4-byte alignment
	err  error
}

// NewCPIOWriter returns a writer that appends entries to w; Close writes the trailer.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: bufio.NewWriter(w), dirs: map[string]bool{".": true, "": true}}
}

const (
	cpioModeDir = 0o040000
	cpioModeReg = 0o100000
	cpioTrailer = "TRAILER!!!"
)

// Mkdir adds a directory (and its missing parents).
func (c *CPIOWriter) Mkdir(name string, perm fs.FileMode) error {
	name = cleanName(name)
	if c.dirs[name] {
		return c.err
	}
	if err := c.Mkdir(path.Dir(name), 0o755); err != nil {
		return err
	}
	c.dirs[name] = true
	return c.entry(name, cpioModeDir|uint32(perm.Perm()), nil)
}

// WriteFile adds a regular file, creating its parent directories as needed.
func (c *CPIOWriter) WriteFile(name string, perm fs.FileMode, data []byte) error {
	name = cleanName(name)
	if err := c.Mkdir(path.Dir(name), 0o755); err != nil {
		return err
	}
	return c.entry(name, cpioModeReg|uint32(perm.Perm()), data)
}

// Close writes the trailer entry and flushes; it does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	c.ino = 0
	if err := c.entry(cpioTrailer, 0, nil); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("cpio: flush: %w", err)
	}
	return nil
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (c *CPIOWriter) entry(name string, mode uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	ino := uint32(0)
	if name != cpioTrailer {
		c.ino++
		ino = c.ino
	}
	nlink := 1
	if mode&cpioModeDir != 0 {
		nlink = 2
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
	// namesize (with NUL), check. mtime 0 keeps archives reproducible.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
	c.write(data)
	c.pad()
	if c.err != nil {
		return fmt.Errorf("cpio: write %s: %w", name, c.err)
	}
	return nil
}

func (c *CPIOWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *CPIOWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// WriteCPIOGz packs files, sorted by path, into a gzip'd newc archive at dst.
func WriteCPIOGz(dst string, files []File) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", dst, cerr)
		}
	}()
	// Speed over size: the archive is built for every run and unpacked once.
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return cleanName(sorted[i].Path) < cleanName(sorted[j].Path) })
	cw := NewCPIOWriter(zw)
	for _, fl := range sorted {
		if err := cw.WriteFile(fl.Path, fl.Mode, fl.Data); err != nil {
			return fmt.Errorf("%s: %w", dst, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("%s: %w", dst, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("%s: gzip close: %w", dst, err)
	}
	return nil
}

// guestFiles turns Scenario.GuestFiles into archive entries: scripts (a "#!" line or a .sh name) and
// ELF programs get 0755.
func guestFiles(m map[string]string) []File {
	files := make([]File, 0, len(m))
	for p, content := range m {
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(content, "#!") || strings.HasPrefix(content, "\x7fELF") || strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		files = append(files, File{Path: p, Mode: mode, Data: []byte(content)})
	}
	return files
}
