// Command mkimage builds jetond's container image with no container daemon
// and no base image to pull, as an OCI image layout (every platform asked
// for) and a docker-archive tarball (the first platform):
//
//	mkimage -src .. -out ../bin/image -tag jetond:v1.2.3 -platform linux/amd64,linux/arm64
//
// See package image for what the image holds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/jeton-dev/jeton/deploy/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	src := flag.String("src", "..", "the jeton module's directory")
	out := flag.String("out", "../bin/image", "output directory: oci/ (layout) and jetond.tar (docker-archive)")
	tag := flag.String("tag", "jetond:dev", "image name and tag written into the archive")
	platforms := flag.String("platform", image.HostPlatform().OS+"/"+image.HostPlatform().Architecture, "comma-separated linux/ARCH[/VARIANT] list")
	ca := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle to ship")
	flag.Parse()

	ctx := context.Background()
	created, err := sourceDate(ctx, *src)
	if err != nil {
		return err
	}
	labels := map[string]string{"org.opencontainers.image.created": created.Format(time.RFC3339)}
	if rev, err := gitOut(ctx, *src, "rev-parse", "HEAD"); err == nil {
		labels["org.opencontainers.image.revision"] = rev
	}
	if v := strings.SplitN(*tag, ":", 2); len(v) == 2 {
		labels["org.opencontainers.image.version"] = v[1]
	}
	var imgs []v1.Image
	for _, ps := range strings.Split(*platforms, ",") {
		p, err := image.ParsePlatform(strings.TrimSpace(ps))
		if err != nil {
			return err
		}
		bin := filepath.Join(*out, "bin", p.OS+"_"+p.Architecture+p.Variant, "jetond")
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return err
		}
		if err := image.BuildBinary(ctx, *src, p, bin); err != nil {
			return err
		}
		img, err := image.Image(image.Spec{Binary: bin, Platform: p, CABundle: *ca, Created: created, Labels: labels})
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	idx, err := image.WriteLayout(filepath.Join(*out, "oci"), imgs...)
	if err != nil {
		return err
	}
	if err := image.WriteArchive(filepath.Join(*out, "jetond.tar"), *tag, imgs[0]); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s/oci: index %s\n", *out, d)
	for _, img := range imgs {
		d, _ := img.Digest()
		size, _ := compressedSize(img)
		cf, _ := img.ConfigFile()
		fmt.Printf("  %s/%s: %s, %d bytes compressed\n", cf.OS, cf.Architecture, d, size)
	}
	fmt.Printf("%s/jetond.tar: %s\n", *out, *tag)
	return nil
}

// sourceDate is SOURCE_DATE_EPOCH when set, else the last commit's time,
// so that rebuilding the same commit gives the same image.
func sourceDate(ctx context.Context, src string) (time.Time, error) {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", v, err)
		}
		return time.Unix(s, 0).UTC(), nil
	}
	v, err := gitOut(ctx, src, "log", "-1", "--format=%ct")
	if err != nil {
		return time.Unix(0, 0).UTC(), nil
	}
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("git commit time %q: %w", v, err)
	}
	return time.Unix(s, 0).UTC(), nil
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	return strings.TrimSpace(string(b)), err
}

func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
