package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/jeton-dev/jeton/deploy/image"
)

const caBundle = "/etc/ssl/certs/ca-certificates.crt"

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// hostBinary builds jetond for the host platform once per test run.
func hostBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "jetond-image-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "jetond")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		buildErr = image.BuildBinary(ctx, "../..", image.HostPlatform(), builtBin)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// layoutUnderTest is the OCI layout `make image` wrote (JETON_IMAGE_LAYOUT),
// or one built here for the host platform.
func layoutUnderTest(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("JETON_IMAGE_LAYOUT"); dir != "" {
		return dir
	}
	if testing.Short() {
		t.Skip("builds jetond")
	}
	if _, err := os.Stat(caBundle); err != nil {
		t.Skipf("no CA bundle at %s to ship", caBundle)
	}
	img, err := image.Image(image.Spec{Binary: hostBinary(t), Platform: image.HostPlatform(), CABundle: caBundle})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	if _, err := image.WriteLayout(dir, img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// file is one entry of the image's filesystem.
type file struct {
	hdr  *tar.Header
	body []byte
}

// TestImage checks every platform image of the layout: the config runs
// jetond as a non-root user with no shell involved; the filesystem holds
// exactly the expected files, owned by root but for the audit directory,
// with no shell and no setuid bit; the binary is the static, CGO-free,
// trimmed jetond for that platform, and on the host platform it runs.
func TestImage(t *testing.T) {
	dir := layoutUnderTest(t)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading the OCI layout %s: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) == 0 {
		t.Fatal("the layout's index lists no image")
	}
	for _, desc := range im.Manifests {
		if desc.Platform == nil {
			t.Fatalf("manifest %s has no platform", desc.Digest)
		}
		t.Run(desc.Platform.OS+"/"+desc.Platform.Architecture, func(t *testing.T) {
			img, err := idx.Image(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkConfig(t, img, *desc.Platform)
			files := readLayers(t, img)
			checkFiles(t, files)
			checkBinary(t, files[strings.TrimPrefix(image.BinaryPath, "/")].body, desc.Platform.Architecture)
		})
	}
}

func checkConfig(t *testing.T, img v1.Image, p v1.Platform) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("config platform %s/%s, index says %s/%s", cf.OS, cf.Architecture, p.OS, p.Architecture)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root, numeric so runAsNonRoot can verify it)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{image.BinaryPath}) {
		t.Errorf("entrypoint %q, want jetond itself (exec form, no shell)", c.Entrypoint)
	}
	if !slices.Equal(c.Cmd, []string{"--config", image.ConfigPath}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	if len(c.Shell) != 0 {
		t.Errorf("shell %q set", c.Shell)
	}
	for _, port := range image.Ports {
		if _, ok := c.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed", port)
		}
	}
	for _, kv := range c.Env {
		if k, _, _ := strings.Cut(kv, "="); strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD") {
			t.Errorf("environment carries a credential variable %s", k)
		}
	}
	if !slices.Contains(c.Env, "SSL_CERT_FILE="+image.CAPath) {
		t.Errorf("SSL_CERT_FILE not set to the shipped bundle: %q", c.Env)
	}
}

func readLayers(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Errorf("%d layers, want 1: nothing but jetond's own", len(layers))
	}
	files := map[string]file{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimSuffix(h.Name, "/")] = file{hdr: h, body: body}
		}
		rc.Close()
	}
	return files
}

func checkFiles(t *testing.T, files map[string]file) {
	t.Helper()
	want := []string{
		"etc", "etc/group", "etc/jeton", "etc/nsswitch.conf", "etc/passwd", "etc/ssl", "etc/ssl/certs",
		"etc/ssl/certs/ca-certificates.crt", "tmp", "usr", "usr/local", "usr/local/bin",
		"usr/local/bin/jetond", "var", "var/lib", "var/lib/jeton",
	}
	var got []string
	for name := range files {
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("image files:\n got %q\nwant %q", got, want)
	}
	for name, f := range files {
		base := path.Base(name)
		if slices.Contains([]string{"sh", "bash", "ash", "dash", "busybox", "su", "sudo"}, base) {
			t.Errorf("%s: a shell or privilege tool in the image", name)
		}
		if f.hdr.Mode&0o6000 != 0 {
			t.Errorf("%s: setuid or setgid bit", name)
		}
		owner := 0
		if name == strings.TrimPrefix(image.AuditDir, "/") {
			owner = image.UID
		}
		if f.hdr.Uid != owner || f.hdr.Gid != owner {
			t.Errorf("%s: owned by %d:%d, want %d", name, f.hdr.Uid, f.hdr.Gid, owner)
		}
		if f.hdr.Mode&0o002 != 0 && name != "tmp" {
			t.Errorf("%s: world-writable", name)
		}
	}
	passwd := string(files["etc/passwd"].body)
	if !strings.Contains(passwd, "jeton:x:65532:65532:") {
		t.Errorf("/etc/passwd names no user 65532: %q", passwd)
	}
	if !bytes.Contains(files["etc/ssl/certs/ca-certificates.crt"].body, []byte("BEGIN CERTIFICATE")) {
		t.Error("the CA bundle holds no certificate")
	}
	if bin := files["usr/local/bin/jetond"]; bin.hdr == nil || bin.hdr.Mode&0o777 != 0o755 {
		t.Error("jetond missing or not mode 0755")
	}
}

func checkBinary(t *testing.T, body []byte, arch string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jetond")
	if err := os.WriteFile(p, body, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := image.CheckStatic(p, arch); err != nil {
		t.Error(err)
	}
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		t.Fatalf("no Go build information in the image's binary: %v", err)
	}
	if bi.Path != "github.com/jeton-dev/jeton/cmd/jetond" {
		t.Errorf("the image's binary is %s, not jetond", bi.Path)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": arch} {
		if settings[k] != v {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], v)
		}
	}
	if arch != runtime.GOARCH || runtime.GOOS != "linux" {
		return
	}
	// It starts with nothing around it: no arguments is a usage error.
	var stderr bytes.Buffer
	cmd := exec.Command(p)
	cmd.Env = []string{}
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), "--config") {
		t.Errorf("running the image's jetond with no arguments: %v, %q; want exit 2 and usage", err, stderr.String())
	}
}

// TestImageReproducible: the same binary and date give the same digest.
func TestImageReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds jetond")
	}
	if _, err := os.Stat(caBundle); err != nil {
		t.Skipf("no CA bundle at %s", caBundle)
	}
	spec := image.Spec{Binary: hostBinary(t), Platform: image.HostPlatform(), CABundle: caBundle, Created: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	var digests []v1.Hash
	for range 2 {
		img, err := image.Image(spec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds differ: %s, %s", digests[0], digests[1])
	}
}

// TestImageRefusesDynamicBinary: a binary that needs a libc would not start
// in an image without one, so the builder refuses it.
func TestImageRefusesDynamicBinary(t *testing.T) {
	dynamic := ""
	for _, p := range []string{"/bin/ls", "/usr/bin/env", "/bin/true"} {
		if err := image.CheckStatic(p, runtime.GOARCH); err != nil && strings.Contains(err.Error(), "not static") {
			dynamic = p
			break
		}
	}
	if dynamic == "" {
		t.Skip("no dynamically linked system binary to try")
	}
	if _, err := image.Image(image.Spec{Binary: dynamic, Platform: image.HostPlatform(), CABundle: caBundle}); err == nil || !strings.Contains(err.Error(), "not static") {
		t.Fatalf("Image accepted %s: %v", dynamic, err)
	}
	if err := image.CheckStatic(dynamic, "arm64"); runtime.GOARCH == "amd64" && (err == nil || !strings.Contains(err.Error(), "not arm64")) {
		t.Errorf("CheckStatic did not notice the architecture: %v", err)
	}
}
