// Package image builds jetond's container image without a container
// daemon and without pulling a base image: one layer on an empty image,
// holding the static jetond binary, a CA bundle and /etc/passwd and
// /etc/group naming the non-root user it runs as. Nothing in it can run but
// jetond: there is no shell, no package manager, no libc.
//
// The image is reproducible: every file time is Created, and the binary is
// built with -trimpath and no build id, so the same sources give the same
// digest.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and identity inside the image.
const (
	BinaryPath = "/usr/local/bin/jetond"
	CAPath     = "/etc/ssl/certs/ca-certificates.crt"
	ConfigPath = "/etc/jeton/jetond.yaml"
	AuditDir   = "/var/lib/jeton"
	// UID and GID are jetond's user, the conventional "nonroot" 65532.
	UID  = 65532
	GID  = 65532
	User = "65532:65532"
)

// Ports jetond listens on in a container: public, trusted, metrics.
var Ports = []string{"7443/tcp", "7444/tcp", "9090/tcp"}

// Spec describes one platform's image.
type Spec struct {
	// Binary is a static Linux jetond for Platform (see BuildBinary).
	Binary   string
	Platform v1.Platform
	// CABundle is a PEM file copied to CAPath, for TLS to Vault, Redis and
	// the trace collector when their CA is not given explicitly.
	CABundle string
	// Created stamps the image and every file; the Unix epoch when zero.
	Created time.Time
	// Labels are OCI annotations for the config, e.g.
	// org.opencontainers.image.revision.
	Labels map[string]string
}

// BuildBinary compiles ./cmd/jetond of the module at src for platform into
// out: CGO off (a static binary, no libc needed), -trimpath and no build id
// (reproducible), symbols stripped (smaller).
func BuildBinary(ctx context.Context, src string, p v1.Platform, out string) error {
	out, err := filepath.Abs(out) // go build runs in src
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./cmd/jetond")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && p.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: go build for %s/%s: %v\n%s", p.OS, p.Architecture, err, b)
	}
	return nil
}

// CheckStatic returns an error unless the ELF file at path is a static
// executable for arch (a GOARCH): no program interpreter, no shared
// library needed. A dynamic binary would not start in an image without a
// libc.
func CheckStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image: %s: %w", path, err)
	}
	defer f.Close()
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV}
	if want, ok := machines[arch]; !ok || f.Machine != want {
		return fmt.Errorf("image: %s is for %v, not %s", path, f.Machine, arch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("image: %s is not an executable (%v)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image: %s needs a program interpreter: it is not static", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("image: %s: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("image: %s needs shared libraries %v: it is not static", path, libs)
	}
	return nil
}

// Image builds one platform's image from spec.
func Image(spec Spec) (v1.Image, error) {
	if err := CheckStatic(spec.Binary, spec.Platform.Architecture); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(spec.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	ca, err := os.ReadFile(spec.CABundle)
	if err != nil {
		return nil, fmt.Errorf("image: CA bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("image: CA bundle %s holds no PEM certificate", spec.CABundle)
	}
	created := spec.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	layerTar, err := rootfs(bin, ca, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "jeton deploy/image: jetond, CA bundle, passwd",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = spec.Platform.OS, spec.Platform.Architecture, spec.Platform.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = []string{"--config", ConfigPath}
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + CAPath}
	cf.Config.StopSignal = "SIGTERM"
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range Ports {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "jetond",
		"org.opencontainers.image.description": "jeton tokenization server",
	}
	for k, v := range spec.Labels {
		cf.Config.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// rootfs is the one layer's tar: directories first, each file owned by
// root except the audit directory, which jetond writes.
func rootfs(bin, ca []byte, mtime time.Time) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\njeton:x:%d:%d:jeton:/nonexistent:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\njeton:x:%d:\n", GID)
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		body     []byte
		dir      bool
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: "etc/jeton/", mode: 0o755, dir: true},
		{name: "etc/nsswitch.conf", mode: 0o644, body: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(CAPath, "/"), mode: 0o644, body: ca},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, body: bin},
		{name: "var/", mode: 0o755, dir: true},
		{name: "var/lib/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(AuditDir, "/") + "/", mode: 0o750, uid: UID, gid: GID, dir: true},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime,
			Typeflag: tar.TypeReg, Size: int64(len(e.body)), Format: tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("image: %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayout writes imgs as one multi-platform index to an OCI image
// layout at dir, replacing what was there. `crane push DIR REF` or
// `skopeo copy --all oci:DIR docker://REF` publishes it.
func WriteLayout(dir string, imgs ...v1.Image) (v1.ImageIndex, error) {
	if len(imgs) == 0 {
		return nil, errors.New("image: no image to write")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		p := cf.Platform()
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if _, err := layout.Write(dir, idx); err != nil {
		return nil, fmt.Errorf("image: layout %s: %w", dir, err)
	}
	return idx, nil
}

// WriteArchive writes img as a docker-archive tarball (for `docker load`
// or `podman load`) tagged ref.
func WriteArchive(path, ref string, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("image: archive %s: %w", path, err)
	}
	return nil
}

// HostPlatform is linux on the build machine's architecture.
func HostPlatform() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// ParsePlatform parses os/arch[/variant], e.g. linux/arm64.
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS != "linux" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("image: platform %q: want linux/ARCH", s)
	}
	return *p, nil
}
