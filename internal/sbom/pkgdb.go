package sbom

import (
	"bufio"
	"bytes"
	"strings"
)

// Package database paths in an image, relative to its root: bakery reads
// these files of a base image to list the packages installed in it.
const (
	DpkgStatusPath   = "var/lib/dpkg/status"
	ApkInstalledPath = "lib/apk/db/installed"
	OSReleasePath    = "etc/os-release"
	OSReleaseUsrPath = "usr/lib/os-release"
)

// IsPackageDB reports whether name (relative, clean) is one of the files
// Packages reads.
func IsPackageDB(name string) bool {
	switch name {
	case DpkgStatusPath, ApkInstalledPath, OSReleasePath, OSReleaseUsrPath:
		return true
	}
	return false
}

// Package is a package a distribution's package manager installed.
type Package struct {
	// Type is "deb" or "apk" (the purl type).
	Type string `json:"type"`
	// Distro is the os-release ID ("debian", "alpine"), when known.
	Distro  string `json:"distro,omitempty"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	// Source is the source package, when it differs from Name.
	Source string `json:"source,omitempty"`
}

// Packages lists the packages of the database files files (by path, see
// IsPackageDB): dpkg's installed packages, then apk's.
func Packages(files map[string][]byte) []Package {
	release := files[OSReleasePath]
	if release == nil {
		release = files[OSReleaseUsrPath]
	}
	distro := osReleaseID(release)
	var pkgs []Package
	if raw, ok := files[DpkgStatusPath]; ok {
		for _, p := range parseStanzas(raw) {
			if !strings.HasSuffix(p["Status"], " installed") || p["Package"] == "" {
				continue
			}
			src, _, _ := strings.Cut(p["Source"], " ")
			if src == p["Package"] {
				src = ""
			}
			pkgs = append(pkgs, Package{Type: "deb", Distro: orDefault(distro, "debian"), Name: p["Package"], Version: p["Version"], Arch: p["Architecture"], Source: src})
		}
	}
	if raw, ok := files[ApkInstalledPath]; ok {
		for _, p := range parseApk(raw) {
			src := p["o"]
			if src == p["P"] {
				src = ""
			}
			pkgs = append(pkgs, Package{Type: "apk", Distro: orDefault(distro, "alpine"), Name: p["P"], Version: p["V"], Arch: p["A"], Source: src})
		}
	}
	return pkgs
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// parseStanzas parses a deb822 file (dpkg's status): stanzas separated by
// blank lines, "Field: value" lines, continuation lines starting with
// white space (ignored: no field bakery reads spans lines).
func parseStanzas(raw []byte) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = map[string]string{}
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			cur[k] = strings.TrimSpace(v)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// parseApk parses apk's installed database: stanzas separated by blank
// lines, "K:value" lines with one-letter keys.
func parseApk(raw []byte) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" {
			if cur["P"] != "" {
				out = append(out, cur)
			}
			cur = map[string]string{}
			continue
		}
		if len(line) >= 2 && line[1] == ':' {
			if _, seen := cur[line[:1]]; !seen {
				cur[line[:1]] = line[2:]
			}
		}
	}
	if cur["P"] != "" {
		out = append(out, cur)
	}
	return out
}

// osReleaseID returns the ID of an os-release file.
func osReleaseID(raw []byte) string {
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ID="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}
