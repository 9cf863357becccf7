// gotar prints how Go's archive/tar (the reader Docker, containerd, buildkit and umoci use)
// reads the tar stream on stdin: one JSON object per entry, then {"end": true} or
// {"error": "..."}. Every entry's data is read to the end, as an engine applying the layer
// does, so errors in the data (truncation, sparse maps) show up as well. Names and values are
// hex so that bytes which are not UTF-8 compare exactly. Standard library only.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
)

type entry struct {
	Name     string            `json:"name"`
	Typeflag int               `json:"typeflag"`
	Size     int64             `json:"size"`
	Linkname string            `json:"linkname"`
	Mode     int64             `json:"mode"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	Uname    string            `json:"uname"`
	Gname    string            `json:"gname"`
	Mtime    int64             `json:"mtime"`
	Nsec     int               `json:"mtime_nsec"`
	Devmajor int64             `json:"devmajor"`
	Devminor int64             `json:"devminor"`
	Xattrs   map[string]string `json:"xattrs"`
	Data     string            `json:"sha256"`
	Length   int64             `json:"length"`
}

func main() {
	out := json.NewEncoder(os.Stdout)
	tr := tar.NewReader(bufio.NewReader(os.Stdin))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			out.Encode(map[string]bool{"end": true})
			return
		}
		if err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, tr)
		if err != nil {
			out.Encode(map[string]string{"error": err.Error(), "at": hex.EncodeToString([]byte(hdr.Name))})
			return
		}
		xattrs := map[string]string{}
		for k, v := range hdr.Xattrs {
			xattrs[hex.EncodeToString([]byte(k))] = hex.EncodeToString([]byte(v))
		}
		out.Encode(entry{
			Name:     hex.EncodeToString([]byte(hdr.Name)),
			Typeflag: int(hdr.Typeflag),
			Size:     hdr.Size,
			Linkname: hex.EncodeToString([]byte(hdr.Linkname)),
			Mode:     hdr.Mode,
			UID:      hdr.Uid,
			GID:      hdr.Gid,
			Uname:    hex.EncodeToString([]byte(hdr.Uname)),
			Gname:    hex.EncodeToString([]byte(hdr.Gname)),
			Mtime:    hdr.ModTime.Unix(),
			Nsec:     hdr.ModTime.Nanosecond(),
			Devmajor: hdr.Devmajor,
			Devminor: hdr.Devminor,
			Xattrs:   xattrs,
			Data:     hex.EncodeToString(h.Sum(nil)),
			Length:   n,
		})
	}
}
