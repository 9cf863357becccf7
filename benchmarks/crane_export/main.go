// crane_export does the work of `crane export` (go-containerregistry's mutate.Extract) on
// layer blobs given bottom to top: each blob's sha256 checked as it streams (as a layer read
// from a layout or registry is), gunzipped with Go's compress/gzip, read with archive/tar,
// and the flattened filesystem written as one tar, the top layer first: a path already
// written, or below a whited-out or non-directory path, is skipped; whiteouts are not
// written. Only the standard library, so the benchmark builds it with Debian's Go, offline.
//
// Usage: crane_export OUT BLOB:SHA256HEX... (OUT "-" is standard output)
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const whiteoutPrefix = ".wh."

type checked struct {
	r    io.Reader
	h    hash.Hash
	want string
	name string
}

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(c.h.Sum(nil)) != c.want {
		return n, fmt.Errorf("%s: digest mismatch", c.name)
	}
	return n, err
}

func inWhiteoutDir(seen map[string]bool, file string) bool {
	for file != "" {
		dir := filepath.Dir(file)
		if dir == file {
			break
		}
		if gone, ok := seen[dir]; ok && gone {
			return true
		}
		file = dir
	}
	return false
}

func export(out io.Writer, layers []string) error {
	w := tar.NewWriter(out)
	seen := map[string]bool{}
	for i := len(layers) - 1; i >= 0; i-- {
		path, digest, _ := strings.Cut(layers[i], ":")
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		raw := &checked{bufio.NewReaderSize(f, 1<<20), sha256.New(), digest, path}
		z, err := gzip.NewReader(raw)
		if err != nil {
			return err
		}
		r := tar.NewReader(z)
		for {
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			base, dir := filepath.Base(h.Name), filepath.Dir(h.Name)
			tombstone := strings.HasPrefix(base, whiteoutPrefix)
			if tombstone {
				base = base[len(whiteoutPrefix):]
			}
			name := h.Name
			if h.Typeflag != tar.TypeDir {
				name = filepath.Join(dir, base)
			}
			if _, ok := seen[name]; ok {
				continue
			}
			if inWhiteoutDir(seen, name) {
				continue
			}
			seen[name] = tombstone || h.Typeflag != tar.TypeDir
			if tombstone {
				continue
			}
			if err := w.WriteHeader(h); err != nil {
				return err
			}
			if h.Size > 0 {
				if _, err := io.Copy(w, r); err != nil {
					return err
				}
			}
		}
		// the rest of the blob, so its digest is checked whole
		if _, err := io.Copy(io.Discard, z); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return err
		}
		f.Close()
	}
	return w.Close()
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: crane_export OUT BLOB:SHA256HEX...")
		os.Exit(2)
	}
	var out io.Writer = os.Stdout
	if os.Args[1] != "-" {
		f, err := os.Create(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		out = f
	}
	buffered := bufio.NewWriterSize(out, 1<<20)
	if err := export(buffered, os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := buffered.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
