// Package chart_test checks the Helm chart in deploy/helm/jeton without a
// cluster: helm lint, then helm template with each values file in ci/,
// then every rendered object decoded strictly (an unknown or misspelt field
// is an error) into the Kubernetes API types, then the promises the chart
// makes read off those objects: one audit volume per replica, the two
// listeners on separate Services, readiness on /readyz, the trusted port
// fenced to the TTP namespace, a hardened pod, and a jetond config whose
// paths and ports match the pod's.
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden jetond configs in testdata/")

const (
	chartDir = "../helm/jeton"
	// kubeVersion is what the chart is rendered for; a helm built from
	// source without release flags would otherwise assume 1.20.
	kubeVersion = "1.33.0"
)

// valueFiles are the chart's CI values: the least an operator sets, and
// every option at once.
var valueFiles = []string{"minimal", "full"}

func helmBin(t testing.TB) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		h = "../../.tools/bin/helm"
	}
	if _, err := os.Stat(h); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("helm not found at %s (make helm installs it)", h)
		}
		t.Skipf("helm not found at %s; run make helm", h)
	}
	return h
}

func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String() + "\n" + stdout.String()))
	}
	return stdout.String(), nil
}

func valuesPath(name string) string { return filepath.Join(chartDir, "ci", name+"-values.yaml") }

func TestChartLint(t *testing.T) {
	for _, v := range valueFiles {
		if out, err := helm(t, "lint", "--strict", chartDir, "-f", valuesPath(v)); err != nil {
			t.Errorf("helm lint with %s values: %v\n%s", v, err, out)
		}
	}
}

// rendered holds the chart's objects, decoded strictly.
type rendered struct {
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	services    map[string]*corev1.Service
	accounts    map[string]*corev1.ServiceAccount
	sts         []*appsv1.StatefulSet
	pdbs        []*policyv1.PodDisruptionBudget
	netpols     []*networkingv1.NetworkPolicy
	objectCount int
}

// render runs helm template and decodes every document into its API type.
func render(t testing.TB, args ...string) *rendered {
	t.Helper()
	out, err := helm(t, append([]string{"template", "jeton", chartDir, "--namespace", "tokenization", "--kube-version", kubeVersion}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return decode(t, out)
}

func decode(t testing.TB, manifest string) *rendered {
	t.Helper()
	r := &rendered{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, accounts: map[string]*corev1.ServiceAccount{},
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("document without apiVersion/kind: %v\n%s", err, doc)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			obj, r.configMaps[name(t, doc)] = o, o
		case "v1/Secret":
			o := &corev1.Secret{}
			obj, r.secrets[name(t, doc)] = o, o
		case "v1/Service":
			o := &corev1.Service{}
			obj, r.services[name(t, doc)] = o, o
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			obj, r.accounts[name(t, doc)] = o, o
		case "apps/v1/StatefulSet":
			o := &appsv1.StatefulSet{}
			obj, r.sts = o, append(r.sts, o)
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, r.pdbs = o, append(r.pdbs, o)
		case "networking.k8s.io/v1/NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			obj, r.netpols = o, append(r.netpols, o)
		default:
			t.Fatalf("the chart renders %s %s, which this test does not know", tm.APIVersion, tm.Kind)
		}
		// Strict: an unknown, misspelt or duplicate field is an error.
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s does not decode strictly into the API type: %v\n%s", tm.Kind, err, doc)
		}
		r.objectCount++
	}
	return r
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func name(t testing.TB, doc []byte) string {
	t.Helper()
	var m struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &m); err != nil || m.Metadata.Name == "" {
		t.Fatalf("object without a name: %v", err)
	}
	return m.Metadata.Name
}

// values reads a CI values file, for the settings the checks compare with.
type values struct {
	TLS struct {
		ExistingSecret string `json:"existingSecret"`
	} `json:"tls"`
	Replicas      *int32 `json:"replicas"`
	NetworkPolicy struct {
		Trusted struct {
			NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`
			PodSelector       *metav1.LabelSelector `json:"podSelector"`
		} `json:"trusted"`
	} `json:"networkPolicy"`
}

func readValues(t testing.TB, name string) values {
	t.Helper()
	b, err := os.ReadFile(valuesPath(name))
	if err != nil {
		t.Fatal(err)
	}
	var v values
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestChartRendersValidObjects renders the chart with each CI values file
// and checks what it promises.
func TestChartRendersValidObjects(t *testing.T) {
	for _, vf := range valueFiles {
		t.Run(vf, func(t *testing.T) {
			r := render(t, "-f", valuesPath(vf))
			v := readValues(t, vf)
			if len(r.sts) != 1 {
				t.Fatalf("%d StatefulSets, want 1", len(r.sts))
			}
			sts := r.sts[0]
			pod := labels.Set(sts.Spec.Template.Labels)
			checkStatefulSet(t, r, sts, v)
			c := jetond(t, sts)
			checkServices(t, r, pod, c)
			checkNetworkPolicy(t, r, pod, v)
			checkPDB(t, r, pod)
			checkVolumes(t, r, sts, v)
			checkConfig(t, r, sts, c, vf)
		})
	}
}

func jetond(t testing.TB, sts *appsv1.StatefulSet) *corev1.Container {
	t.Helper()
	cs := sts.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "jetond" {
		t.Fatalf("containers %v, want jetond alone", cs)
	}
	return &cs[0]
}

func selects(t testing.TB, sel *metav1.LabelSelector, pod labels.Set) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("bad selector %v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(pod)
}

func port(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func checkStatefulSet(t *testing.T, r *rendered, sts *appsv1.StatefulSet, v values) {
	pod := labels.Set(sts.Spec.Template.Labels)
	if !selects(t, sts.Spec.Selector, pod) {
		t.Error("the StatefulSet's selector does not select its own pods")
	}
	if want := v.Replicas; want != nil && (sts.Spec.Replicas == nil || *sts.Spec.Replicas != *want) {
		t.Errorf("replicas %v, want %d", sts.Spec.Replicas, *want)
	}
	if h := r.services[sts.Spec.ServiceName]; h == nil || h.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("serviceName %q is not a rendered headless Service", sts.Spec.ServiceName)
	}
	// Each replica's audit log on its own claim, kept when scaled down or
	// deleted.
	var audit *corev1.PersistentVolumeClaim
	for i := range sts.Spec.VolumeClaimTemplates {
		if sts.Spec.VolumeClaimTemplates[i].Name == "audit" {
			audit = &sts.Spec.VolumeClaimTemplates[i]
		}
	}
	if audit == nil {
		t.Fatal("no audit volumeClaimTemplate")
	}
	if !slices.Equal(audit.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("audit claim access modes %v, want ReadWriteOnce only: one replica, one log", audit.Spec.AccessModes)
	}
	if q := audit.Spec.Resources.Requests[corev1.ResourceStorage]; q.IsZero() {
		t.Error("audit claim requests no storage")
	}
	ret := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if ret == nil || ret.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || ret.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("audit claims are not retained on delete and scale-down: %+v", ret)
	}
	for _, vol := range sts.Spec.Template.Spec.Volumes {
		if vol.Name == "audit" {
			t.Error("a pod volume named audit shadows the claim template")
		}
	}

	c := jetond(t, sts)
	ps := sts.Spec.Template.Spec
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", what)
			return
		}
		if p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "metrics" {
			t.Errorf("%s probe %s on port %s, want %s on the metrics port", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("startup", c.StartupProbe, "/healthz")
	for _, n := range []string{"public", "trusted", "metrics"} {
		if port(c, n) == 0 {
			t.Errorf("no container port named %s", n)
		}
	}

	// Hardening.
	psc, sc := ps.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod: runAsNonRoot with a non-zero runAsUser is required")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod: seccomp RuntimeDefault is required")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container: readOnlyRootFilesystem is required")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: allowPrivilegeEscalation must be false")
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Error("container: capabilities must drop ALL and add none")
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		t.Error("container: privileged")
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("pod: the service account token is mounted, though jetond never calls the API")
	}
	if ps.HostNetwork || ps.HostPID || ps.HostIPC {
		t.Error("pod: shares a host namespace")
	}
	// The secret_id is a file, never an environment variable.
	for _, e := range c.Env {
		if strings.Contains(strings.ToUpper(e.Name), "SECRET_ID") || (e.Value != "" && strings.Contains(e.Value, "fake-secret-id")) {
			t.Errorf("env %s carries the AppRole secret_id", e.Name)
		}
	}
	if ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds <= 30 {
		t.Error("the grace period does not cover the drain timeout")
	}
}

func checkServices(t *testing.T, r *rendered, pod labels.Set, c *corev1.Container) {
	found := map[string]bool{}
	for n, s := range r.services {
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, pod) {
			t.Errorf("Service %s does not select the pods", n)
		}
		if len(s.Spec.Ports) != 1 {
			t.Errorf("Service %s exposes %d ports; each listener has its own Service", n, len(s.Spec.Ports))
			continue
		}
		target := s.Spec.Ports[0].TargetPort.StrVal
		if target != "public" && target != "trusted" {
			t.Errorf("Service %s targets %q", n, s.Spec.Ports[0].TargetPort.String())
		}
		if found[target] {
			t.Errorf("two Services target %s", target)
		}
		found[target] = true
		if s.Spec.Ports[0].Port != port(c, target) {
			t.Errorf("Service %s port %d, container's %d", n, s.Spec.Ports[0].Port, port(c, target))
		}
	}
	if !found["public"] || !found["trusted"] {
		t.Errorf("listener Services found: %v; want public and trusted", found)
	}
}

func checkNetworkPolicy(t *testing.T, r *rendered, pod labels.Set, v values) {
	if len(r.netpols) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(r.netpols))
	}
	np := r.netpols[0]
	if !selects(t, &np.Spec.PodSelector, pod) {
		t.Error("the NetworkPolicy does not select the pods")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Error("the NetworkPolicy does not govern ingress")
	}
	want := v.NetworkPolicy.Trusted.NamespaceSelector
	if want == nil {
		want = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ttp"}}
	}
	trustedRules := 0
	for i, rule := range np.Spec.Ingress {
		// A rule without ports admits every port, the trusted one too.
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d names no port: it admits the trusted port", i)
			continue
		}
		admitsTrusted := false
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.StrVal == "trusted" || p.EndPort != nil {
				admitsTrusted = true
			}
		}
		if !admitsTrusted {
			continue
		}
		trustedRules++
		if len(rule.From) == 0 {
			t.Errorf("ingress rule %d admits the trusted port from anywhere", i)
		}
		for _, peer := range rule.From {
			if peer.IPBlock != nil || peer.NamespaceSelector == nil || !reflect.DeepEqual(peer.NamespaceSelector, want) {
				t.Errorf("ingress rule %d admits the trusted port from %+v, want the TTP namespace %v only", i, peer, want)
			}
			if ps := v.NetworkPolicy.Trusted.PodSelector; ps != nil && len(ps.MatchLabels) > 0 && !reflect.DeepEqual(peer.PodSelector, ps) {
				t.Errorf("ingress rule %d: pod selector %v, want %v", i, peer.PodSelector, ps)
			}
		}
	}
	if trustedRules != 1 {
		t.Errorf("%d ingress rules cover the trusted port, want 1", trustedRules)
	}
}

func checkPDB(t *testing.T, r *rendered, pod labels.Set) {
	if len(r.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	p := r.pdbs[0]
	if !selects(t, p.Spec.Selector, pod) {
		t.Error("the PodDisruptionBudget does not select the pods")
	}
	if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget bounds nothing")
	}
}

// checkVolumes: every mount names a volume or claim, every volume's source
// is rendered here or named in the values, and every secret item exists.
func checkVolumes(t *testing.T, r *rendered, sts *appsv1.StatefulSet, v values) {
	c := jetond(t, sts)
	vols := map[string]corev1.Volume{}
	for _, vol := range sts.Spec.Template.Spec.Volumes {
		vols[vol.Name] = vol
	}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok && m.Name != "audit" {
			t.Errorf("mount %s names no volume", m.Name)
		}
		if m.Name != "audit" && !m.ReadOnly {
			t.Errorf("mount %s is writable; only the audit volume is", m.Name)
		}
	}
	for _, vol := range vols {
		switch {
		case vol.ConfigMap != nil:
			cm := r.configMaps[vol.ConfigMap.Name]
			if cm == nil {
				t.Errorf("volume %s: ConfigMap %s is not rendered", vol.Name, vol.ConfigMap.Name)
			}
		case vol.Secret != nil:
			s := r.secrets[vol.Secret.SecretName]
			if s == nil {
				continue // an existing Secret the operator named
			}
			for _, it := range vol.Secret.Items {
				if _, ok := s.Data[it.Key]; !ok {
					t.Errorf("volume %s: Secret %s has no key %s", vol.Name, s.Name, it.Key)
				}
			}
		default:
			t.Errorf("volume %s: unexpected source", vol.Name)
		}
	}
	if v.TLS.ExistingSecret == "" {
		tls := r.secrets[vols["tls"].Secret.SecretName]
		if tls == nil {
			t.Fatal("no TLS Secret rendered for inline material")
		}
		for _, k := range []string{"server.pem", "server-key.pem", "sponsor-ca.pem", "ttp-ca.pem"} {
			if len(tls.Data[k]) == 0 {
				t.Errorf("TLS Secret lacks %s", k)
			}
		}
	}
}

// mountedFile reports whether path inside the pod is served by a mount,
// and by which volume and key.
func mountedFile(c *corev1.Container, path string) (vol, key string, ok bool) {
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" && m.MountPath == path {
			return m.Name, m.SubPath, true
		}
		if m.SubPath == "" && strings.HasPrefix(path, m.MountPath+"/") {
			return m.Name, strings.TrimPrefix(path, m.MountPath+"/"), true
		}
	}
	return "", "", false
}

// checkConfig reads the rendered jetond.yaml: its ports are the
// container's, every file it names is mounted, the audit directory is on
// the claim; and it matches the golden copy that jetond's own tests
// validate (cmd/jetond TestChartConfigsAreValid).
func checkConfig(t *testing.T, r *rendered, sts *appsv1.StatefulSet, c *corev1.Container, vf string) {
	var cm *corev1.ConfigMap
	for _, m := range r.configMaps {
		cm = m
	}
	if len(r.configMaps) != 1 || cm.Data["jetond.yaml"] == "" || cm.Data["policy.yaml"] == "" {
		t.Fatal("want one ConfigMap with jetond.yaml and policy.yaml")
	}
	if !slices.Equal(c.Args[:2], []string{"--config", "/etc/jeton/jetond.yaml"}) {
		t.Errorf("args %q", c.Args)
	}
	if vol, key, ok := mountedFile(c, "/etc/jeton/jetond.yaml"); !ok || vol != "config" || key != "jetond.yaml" {
		t.Error("jetond.yaml is not mounted from the ConfigMap")
	}
	var cfg struct {
		Public, Trusted struct {
			Addr string
			TLS  map[string]string
		}
		Metrics struct{ Addr string }
		Audit   struct{ Dir string }
		Policy  string `json:"policy_file"`
		Vault   struct {
			AppRole struct {
				SecretIDFile string `json:"secret_id_file"`
			} `json:"approle"`
		}
		Redis struct{ TLS map[string]string }
	}
	if err := yaml.Unmarshal([]byte(cm.Data["jetond.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ name, addr string }{{"public", cfg.Public.Addr}, {"trusted", cfg.Trusted.Addr}, {"metrics", cfg.Metrics.Addr}} {
		_, p, err := net.SplitHostPort(l.addr)
		if err != nil || p != strconv.Itoa(int(port(c, l.name))) {
			t.Errorf("%s listens on %q, the container port is %d", l.name, l.addr, port(c, l.name))
		}
	}
	files := []string{cfg.Policy, cfg.Vault.AppRole.SecretIDFile}
	for _, m := range []map[string]string{cfg.Public.TLS, cfg.Trusted.TLS, cfg.Redis.TLS} {
		for k, f := range m {
			if k != "server_name" {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		vol, key, ok := mountedFile(c, f)
		if !ok {
			t.Errorf("the config names %s, which no volume provides", f)
			continue
		}
		for _, pv := range sts.Spec.Template.Spec.Volumes {
			if pv.Name == vol && pv.Secret != nil {
				if s := r.secrets[pv.Secret.SecretName]; s != nil && len(s.Data[key]) == 0 {
					t.Errorf("%s: Secret %s has no key %s", f, s.Name, key)
				}
			}
		}
	}
	if vol, _, ok := mountedFile(c, cfg.Audit.Dir); !ok || vol != "audit" {
		t.Errorf("audit.dir %s is not on the audit claim", cfg.Audit.Dir)
	}

	golden := filepath.Join("testdata", vf)
	for _, f := range []string{"jetond.yaml", "policy.yaml"} {
		p := filepath.Join(golden, f)
		if *update {
			if err := os.MkdirAll(golden, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(cm.Data[f]), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(p)
		if err != nil || string(want) != cm.Data[f] {
			t.Errorf("%s differs from what the chart renders (go test ./chart -update rewrites it): %v", p, err)
		}
	}
}

// TestChartRefusesUnsafeValues: missing required values, an empty TTP
// selector (every namespace) or one CA for both listeners fail the render,
// naming what to fix.
func TestChartRefusesUnsafeValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"defaults", nil, []string{"redis.addrs", "vault.addr", "vault.approle.roleID", "policy", "listeners.trusted.allowedCIDRs", "tls.serverCert"}},
		{"any namespace on the trusted port", []string{"-f", valuesPath("minimal"), "--set", "networkPolicy.trusted.namespaceSelector=null"}, []string{"networkPolicy.trusted.namespaceSelector"}},
		{"one CA for both listeners", []string{"-f", valuesPath("full"), "--set", "tls.ttpCA=same", "--set", "tls.sponsorCA=same"}, []string{"tls.ttpCA must differ"}},
		{"secret_id twice", []string{"-f", valuesPath("full"), "--set", "vault.approle.secretIDSecret.name=x"}, []string{"not both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "jeton", chartDir, "--kube-version", kubeVersion}, tt.args...)...)
			if err == nil {
				t.Fatal("rendered")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// TestChartScalesAndFences renders variations an operator is likely to
// make: replicas, the PDB off, the NetworkPolicy off, a digest.
func TestChartScalesAndFences(t *testing.T) {
	r := render(t, "-f", valuesPath("minimal"), "--set", "replicas=7", "--set", "podDisruptionBudget.enabled=false", "--set", "networkPolicy.enabled=false")
	if n := *r.sts[0].Spec.Replicas; n != 7 {
		t.Errorf("replicas %d, want 7", n)
	}
	if len(r.pdbs) != 0 || len(r.netpols) != 0 {
		t.Error("disabled PDB or NetworkPolicy rendered")
	}
	img := jetond(t, r.sts[0]).Image
	if !strings.Contains(img, "@sha256:") {
		t.Errorf("image %q is not pinned by the digest given", img)
	}
}
