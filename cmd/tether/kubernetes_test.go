package main

// The Kubernetes manifests in examples/kubernetes, validated offline. Each
// object is decoded strictly into the real k8s.io/api types, as the API
// server's strict field validation would: an unknown or misspelt field, a
// field in the wrong case, a duplicate key or a value of the wrong type is
// an error. Then the facts the docs rely on are checked across the objects
// and against the ConfigMap's tether.toml: the probes reach the admin API's
// /ready and /healthz, the grace period covers the preStop sleep and the
// drain, the selectors pick the pod template's labels, the ports are the
// virtual servers' ports, the pod runs without root or capabilities, and
// the PodDisruptionBudget lets a drain go on one pod at a time.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

const (
	k8sDir       = "../../examples/kubernetes"
	k8sConfigKey = "tether.toml" // the ConfigMap's key holding the config
	// k8sAdminStop is how long `tether run` gives the admin API to stop
	// after the drain (run.go); the grace period must leave it that too.
	k8sAdminStop = 5 * time.Second
)

// k8sSet is the examples/kubernetes set: one object of each kind.
type k8sSet struct {
	kinds      []string // every object's kind, in file order
	configMap  *corev1.ConfigMap
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	readme     string // README.md
}

// k8sObject returns a new object of the Go type of apiVersion and kind.
func k8sObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	}
	return nil, false
}

// yamlDocuments splits a YAML stream at its "---" lines.
func yamlDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if string(bytes.TrimRight(line, " \t\r\n")) == "---" {
			docs, cur = append(docs, cur), nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// decodeK8s decodes every document of a YAML file strictly into its
// k8s.io/api type; name is the file's, for messages.
func decodeK8s(name string, b []byte) ([]any, error) {
	var objs []any
	for i, doc := range yamlDocuments(b) {
		j, err := yaml.YAMLToJSONStrict(doc) // a duplicate key is an error
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if t := string(bytes.TrimSpace(j)); t == "" || t == "null" {
			continue // comments only
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		obj, ok := k8sObject(tm.APIVersion, tm.Kind)
		if !ok {
			return nil, fmt.Errorf("%s: document %d: apiVersion %q kind %q is none of v1 ConfigMap, apps/v1 Deployment, v1 Service, policy/v1 PodDisruptionBudget",
				name, i+1, tm.APIVersion, tm.Kind)
		}
		// Case-sensitive, as the API server decodes (encoding/json would
		// take "Replicas" for "replicas").
		strict, err := sigsjson.UnmarshalStrict(j, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err == nil {
			err = errors.Join(strict...)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", name, i+1, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// loadK8s reads and decodes every YAML file of examples/kubernetes.
func loadK8s(t *testing.T) *k8sSet {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.y*ml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	s := &k8sSet{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeK8s(filepath.Base(f), b)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			s.add(t, obj)
		}
	}
	readme, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s.readme = string(readme)
	return s
}

func (s *k8sSet) add(t *testing.T, obj any) {
	t.Helper()
	twice := false
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		twice, s.configMap = s.configMap != nil, o
	case *appsv1.Deployment:
		twice, s.deployment = s.deployment != nil, o
	case *corev1.Service:
		twice, s.service = s.service != nil, o
	case *policyv1.PodDisruptionBudget:
		twice, s.pdb = s.pdb != nil, o
	}
	kind := strings.TrimPrefix(fmt.Sprintf("%T", obj), "*")
	if twice {
		t.Fatalf("two objects of kind %s: the checks relate one of each", kind)
	}
	s.kinds = append(s.kinds, kind)
}

// wildcardHost reports whether a listen host takes every address of the
// pod (its IP included, where the kubelet and the Service send traffic).
func wildcardHost(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// k8sCheck checks a k8sSet, one method per concern; each method adds what
// it finds wrong to found and sets what later ones need.
type k8sCheck struct {
	*k8sSet
	found []string

	cfg       *config.Config    // the ConfigMap's tether.toml
	spec      *corev1.PodSpec   // the Deployment's pod template
	pod       labels.Set        // its labels
	sel       labels.Selector   // the Deployment's selector
	replicas  int               // the Deployment's
	c         *corev1.Container // the container named tether
	ports     map[int32]bool    // its container ports
	byName    map[string]int32  // its named ports
	adminPort int               // the config's admin API port
	vsPorts   map[int32]string  // virtual server by listen port
}

func (k *k8sCheck) bad(format string, a ...any) {
	k.found = append(k.found, fmt.Sprintf(format, a...))
}

// problems checks what the docs rely on; nil = none.
func (s *k8sSet) problems() []string {
	k := &k8sCheck{k8sSet: s}
	if s.configMap == nil || s.deployment == nil || s.service == nil || s.pdb == nil {
		k.bad("want a ConfigMap, a Deployment, a Service and a PodDisruptionBudget; got %v", s.kinds)
		return k.found
	}
	if !k.config() || !k.deploymentAndContainer() {
		return k.found
	}
	k.files()
	k.admin()
	k.probes()
	k.stop()
	k.listeners()
	k.security()
	k.resources()
	k.serviceTargets()
	k.disruptionBudget()
	return k.found
}

// config: the ConfigMap's tether.toml is valid, without warnings.
func (k *k8sCheck) config() bool {
	cm := k.configMap
	text, ok := cm.Data[k8sConfigKey]
	if !ok {
		k.bad("ConfigMap %s: no key %q", cm.Name, k8sConfigKey)
		return false
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		k.bad("ConfigMap %s: %s: %v", cm.Name, k8sConfigKey, err)
		return false
	}
	for _, w := range cfg.Warnings {
		k.bad("ConfigMap %s: %s: warning: %s", cm.Name, k8sConfigKey, w)
	}
	k.cfg = cfg
	return true
}

// deploymentAndContainer: replicas, a rolling update that keeps capacity,
// a selector that picks its own pods, and the container named tether.
func (k *k8sCheck) deploymentAndContainer() bool {
	d := k.deployment
	k.spec = &d.Spec.Template.Spec
	k.pod = labels.Set(d.Spec.Template.Labels)
	k.replicas = 1
	if d.Spec.Replicas != nil {
		k.replicas = int(*d.Spec.Replicas)
	}
	if k.replicas < 2 {
		k.bad("Deployment: replicas %d: want 2 or more, so that one serves while another is replaced or evicted", k.replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil {
		k.bad("Deployment: strategy: want RollingUpdate with maxUnavailable 0 and maxSurge 1 or more")
	} else {
		if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, k.replicas, false); err != nil || n != 0 {
			k.bad("Deployment: rollingUpdate.maxUnavailable %v: want 0, so an old pod stops only once its replacement is ready", ru.MaxUnavailable)
		}
		if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, k.replicas, true); err != nil || n < 1 {
			k.bad("Deployment: rollingUpdate.maxSurge %v: want 1 or more (with maxUnavailable 0 the rollout cannot start otherwise)", ru.MaxSurge)
		}
	}
	var err error
	k.sel, err = metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || k.sel.Empty() || !k.sel.Matches(k.pod) {
		k.bad("Deployment: selector %v (%v) does not select its pod template's labels %v", d.Spec.Selector, err, k.pod)
	}

	for i := range k.spec.Containers {
		if k.spec.Containers[i].Name == "tether" {
			k.c = &k.spec.Containers[i]
		}
	}
	if k.c == nil {
		k.bad("Deployment: no container named tether")
		return false
	}
	if k.c.Image == "" {
		k.bad("Deployment: container tether: no image")
	}
	k.ports, k.byName = map[int32]bool{}, map[string]int32{}
	for _, cp := range k.c.Ports {
		if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
			k.bad("Deployment: containerPort %d: protocol %s, tether serves TCP", cp.ContainerPort, cp.Protocol)
		}
		k.ports[cp.ContainerPort] = true
		if cp.Name != "" {
			k.byName[cp.Name] = cp.ContainerPort
		}
	}
	return true
}

// resolve turns a probe's or a Service's port (a number or a container
// port's name) into the container port.
func (k *k8sCheck) resolve(port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.String {
		n, ok := k.byName[port.StrVal]
		return n, ok
	}
	return port.IntVal, port.IntVal > 0
}

// files: the config file is the ConfigMap's key, the admin token a
// Secret's, and the README says how to create that Secret.
func (k *k8sCheck) files() {
	c := k.c
	if len(c.Command) != 0 || len(c.Args) != 3 || c.Args[0] != "run" || c.Args[1] != "-c" {
		k.bad("Deployment: container tether: command %q args %q: want the image's entrypoint with args [run -c FILE]", c.Command, c.Args)
	} else if vol, key, err := mountedFile(k.spec, c, c.Args[2]); err != nil {
		k.bad("Deployment: config %s: %v", c.Args[2], err)
	} else if vol.ConfigMap == nil || vol.ConfigMap.Name != k.configMap.Name || key != k8sConfigKey {
		k.bad("Deployment: config %s: comes from volume %q, not from key %q of ConfigMap %s", c.Args[2], vol.Name, k8sConfigKey, k.configMap.Name)
	}
	tf := k.cfg.Admin.TokenFile
	if tf == "" {
		return
	}
	vol, key, err := mountedFile(k.spec, c, tf)
	switch {
	case !filepath.IsAbs(tf):
		k.bad("ConfigMap: [admin] token_file %q: make it absolute (a relative one is taken from the config's directory, the ConfigMap's)", tf)
	case err != nil:
		k.bad("Deployment: admin token_file %s: %v", tf, err)
	case vol.Secret == nil || vol.Secret.SecretName == "":
		k.bad("Deployment: admin token_file %s: comes from volume %q, which is not a Secret", tf, vol.Name)
	case vol.Secret.Optional != nil && *vol.Secret.Optional:
		k.bad("Deployment: Secret volume %q is optional: without it tether cannot start", vol.Name)
	default:
		name := vol.Secret.SecretName
		if !strings.Contains(k.readme, "kubectl create secret generic "+name+" --from-literal="+key+"=") {
			k.bad("README.md: does not say how to create the Secret %s with key %q (kubectl create secret generic %s --from-literal=%s=...)", name, key, name, key)
		}
	}
}

// admin: the admin API listens at the pod's IP on a container port.
func (k *k8sCheck) admin() {
	listen := k.cfg.Admin.Listen
	host, portText, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(portText)
	switch {
	case listen == "":
		k.bad("ConfigMap: [admin] is off: the probes need /ready and /healthz")
	case err != nil || perr != nil:
		k.bad("ConfigMap: [admin] listen %q: %v %v", listen, err, perr)
	case !wildcardHost(host):
		k.bad("ConfigMap: [admin] listen %q: the kubelet probes the pod's IP; listen on \":%d\"", listen, port)
	}
	if !k.ports[int32(port)] {
		k.bad("Deployment: the admin port %d is not a containerPort", port)
	}
	k.adminPort = port
}

// probes: readiness on /ready, liveness on /healthz, both on the admin
// port at the pod's IP, in plain http, carrying no token.
func (k *k8sCheck) probes() {
	probe := func(what string, pr *corev1.Probe, route string) {
		if pr == nil || pr.HTTPGet == nil {
			k.bad("Deployment: %s: want httpGet %s on the admin port", what, route)
			return
		}
		g := pr.HTTPGet
		if g.Path != route {
			k.bad("Deployment: %s: path %q, want %q", what, g.Path, route)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			k.bad("Deployment: %s: scheme %s: the admin API speaks plain http", what, g.Scheme)
		}
		if g.Host != "" {
			k.bad("Deployment: %s: host %q: the kubelet must probe the pod's IP", what, g.Host)
		}
		if n, ok := k.resolve(g.Port); !ok || int(n) != k.adminPort {
			k.bad("Deployment: %s: port %s is %d, the admin API listens on %d", what, g.Port.String(), n, k.adminPort)
		}
		for _, h := range g.HTTPHeaders {
			if strings.EqualFold(h.Name, "Authorization") {
				k.bad("Deployment: %s: sends %s: a probe's headers are plain text in the pod spec, and %s needs no token", what, h.Name, route)
			}
		}
	}
	probe("readinessProbe", k.c.ReadinessProbe, "/ready")
	probe("livenessProbe", k.c.LivenessProbe, "/healthz")
}

// stop: preStop sleeps while the endpoints go; then SIGTERM and the
// drain; the grace period covers both and the admin API's stop, and the
// README gives these figures.
func (k *k8sCheck) stop() {
	var preStop time.Duration
	switch ps := k.c.Lifecycle; {
	case ps == nil || ps.PreStop == nil:
		k.bad("Deployment: no preStop: SIGTERM would close the listeners while kube-proxy and load balancers still send to the pod")
	case ps.PreStop.Sleep != nil:
		preStop = time.Duration(ps.PreStop.Sleep.Seconds) * time.Second
	case ps.PreStop.Exec != nil && len(ps.PreStop.Exec.Command) == 2 && path.Base(ps.PreStop.Exec.Command[0]) == "sleep":
		n, _ := strconv.Atoi(ps.PreStop.Exec.Command[1])
		preStop = time.Duration(n) * time.Second
	default:
		k.bad("Deployment: preStop: want a sleep (the sleep action, or exec sleep N)")
	}
	if preStop <= 0 {
		k.bad("Deployment: preStop sleeps %v: want a few seconds, for the endpoints to be removed before SIGTERM", preStop)
	}
	grace := 30 * time.Second // Kubernetes' default
	if k.spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*k.spec.TerminationGracePeriodSeconds) * time.Second
	}
	drain := k.cfg.Global.ShutdownTimeout
	if need := preStop + drain + k8sAdminStop; grace < need {
		k.bad("Deployment: terminationGracePeriodSeconds %d: want at least %d = preStop %v + shutdown_timeout %v + %v for the admin API's stop, else the kubelet's SIGKILL cuts the drain",
			int(grace.Seconds()), int(need.Seconds()), preStop, drain, k8sAdminStop)
	}
	for _, claim := range []string{
		fmt.Sprintf("sleeps %d s", int(preStop.Seconds())),
		fmt.Sprintf("`shutdown_timeout` (%d s", int(drain.Seconds())),
		fmt.Sprintf("`terminationGracePeriodSeconds` is %d s", int(grace.Seconds())),
	} {
		if !strings.Contains(k.readme, claim) {
			k.bad("README.md: does not say %q (the manifests' figures)", claim)
		}
	}
}

// listeners: every virtual server listens at the pod's IP on a container
// port, and every container port is a virtual server's or the admin API's.
func (k *k8sCheck) listeners() {
	k.vsPorts = map[int32]string{}
	for _, vs := range k.cfg.VirtualServers {
		host, portText, err := net.SplitHostPort(vs.Listen)
		port, perr := strconv.Atoi(portText)
		switch {
		case err != nil || perr != nil:
			k.bad("ConfigMap: virtual_server %q: listen %q: %v %v", vs.Name, vs.Listen, err, perr)
			continue
		case !wildcardHost(host):
			k.bad("ConfigMap: virtual_server %q: listen %q: not reachable at the pod's IP; listen on \":%d\"", vs.Name, vs.Listen, port)
		}
		if !k.ports[int32(port)] {
			k.bad("Deployment: virtual_server %q's port %d is not a containerPort", vs.Name, port)
		}
		if port < 1024 && !hasCapability(k.c, "NET_BIND_SERVICE") {
			k.bad("ConfigMap: virtual_server %q: port %d needs NET_BIND_SERVICE, which the container drops; listen on 1024 or above", vs.Name, port)
		}
		k.vsPorts[int32(port)] = vs.Name
	}
	for _, cp := range k.c.Ports {
		if _, ok := k.vsPorts[cp.ContainerPort]; !ok && int(cp.ContainerPort) != k.adminPort {
			k.bad("Deployment: containerPort %d (%s): no virtual server listens there", cp.ContainerPort, cp.Name)
		}
	}
}

// security: no root, no capabilities, a read-only root file system, no
// service account token.
func (k *k8sCheck) security() {
	psc, sc := k.spec.SecurityContext, k.c.SecurityContext
	nonRoot, uid := false, int64(-1)
	if psc != nil {
		nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		if psc.RunAsUser != nil {
			uid = *psc.RunAsUser
		}
	}
	if sc != nil && sc.RunAsNonRoot != nil {
		nonRoot = *sc.RunAsNonRoot
	}
	if sc != nil && sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	if !nonRoot || uid == 0 {
		k.bad("Deployment: runAsNonRoot %v, runAsUser %d: tether needs no root", nonRoot, uid)
	}
	switch {
	case sc == nil:
		k.bad("Deployment: container tether: no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		k.bad("Deployment: readOnlyRootFilesystem is not true: tether writes no file")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged:
		k.bad("Deployment: allowPrivilegeEscalation must be false, privileged unset or false")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		k.bad("Deployment: capabilities: want drop [ALL]")
	}
	if sc != nil && sc.Capabilities != nil {
		for _, add := range sc.Capabilities.Add {
			if add != "NET_BIND_SERVICE" {
				k.bad("Deployment: capabilities add %s: tether needs none (NET_BIND_SERVICE at most, for ports below 1024)", add)
			}
		}
	}
	if a := k.spec.AutomountServiceAccountToken; a == nil || *a {
		k.bad("Deployment: automountServiceAccountToken is not false: tether never calls the Kubernetes API")
	}
}

// resources: requests for the scheduler, a memory limit, no limit below
// its request.
func (k *k8sCheck) resources() {
	r := k.c.Resources
	for _, want := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		what string
	}{
		{r.Requests, corev1.ResourceCPU, "requests.cpu"},
		{r.Requests, corev1.ResourceMemory, "requests.memory"},
		{r.Limits, corev1.ResourceMemory, "limits.memory"},
	} {
		if q, ok := want.list[want.name]; !ok || q.IsZero() {
			k.bad("Deployment: resources.%s is not set", want.what)
		}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[name]
		limit, hasLimit := r.Limits[name]
		if hasReq && hasLimit && limit.Cmp(req) < 0 {
			k.bad("Deployment: resources: limits.%s %s below requests.%s %s", name, limit.String(), name, req.String())
		}
	}
}

// serviceTargets: the Service selects the Deployment's pods and targets virtual servers
// only, never the admin API.
func (k *k8sCheck) serviceTargets() {
	svc := k.service
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(k.pod) {
		k.bad("Service %s: selector %v does not select the Deployment's pods %v", svc.Name, svc.Spec.Selector, k.pod)
	}
	if len(svc.Spec.Ports) == 0 {
		k.bad("Service %s: no ports", svc.Name)
	}
	for _, sp := range svc.Spec.Ports {
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port) // the default
		}
		n, ok := k.resolve(target)
		switch {
		case sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP:
			k.bad("Service %s: port %d: protocol %s, tether serves TCP", svc.Name, sp.Port, sp.Protocol)
		case !ok:
			k.bad("Service %s: port %d: targetPort %s names no container port", svc.Name, sp.Port, target.String())
		case int(n) == k.adminPort:
			k.bad("Service %s: port %d exposes the admin API (%d); reach it with kubectl port-forward", svc.Name, sp.Port, n)
		case k.vsPorts[n] == "":
			k.bad("Service %s: port %d: targetPort %s is %d, where no virtual server listens", svc.Name, sp.Port, target.String(), n)
		}
	}
}

// disruptionBudget: the PodDisruptionBudget covers exactly the
// Deployment's pods and allows one eviction at a time, not zero (every
// node drain would block) and not all.
func (k *k8sCheck) disruptionBudget() {
	pdb := k.pdb
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(k.pod) {
		k.bad("PodDisruptionBudget %s: selector %v (%v) does not select the Deployment's pods %v", pdb.Name, pdb.Spec.Selector, err, k.pod)
	} else if k.sel != nil && sel.String() != k.sel.String() {
		k.bad("PodDisruptionBudget %s: selector %q differs from the Deployment's %q", pdb.Name, sel, k.sel)
	}
	switch mu, ma := pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable; {
	case (mu == nil) == (ma == nil):
		k.bad("PodDisruptionBudget %s: set one of maxUnavailable and minAvailable", pdb.Name)
	case mu != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(mu, k.replicas, true)
		if err != nil || n < 1 || n >= k.replicas {
			k.bad("PodDisruptionBudget %s: maxUnavailable %s of %d replicas: want 1 to %d (0 blocks every node drain, %d lets them all go)", pdb.Name, mu.String(), k.replicas, k.replicas-1, k.replicas)
		}
	default:
		n, err := intstr.GetScaledValueFromIntOrPercent(ma, k.replicas, true)
		if err != nil || n < 1 || n >= k.replicas {
			k.bad("PodDisruptionBudget %s: minAvailable %s of %d replicas: want 1 to %d", pdb.Name, ma.String(), k.replicas, k.replicas-1)
		}
	}
}

// mountedFile finds where a file of the container comes from: its volume
// and the key (ConfigMap or Secret) projected at that path.
func mountedFile(spec *corev1.PodSpec, c *corev1.Container, file string) (*corev1.Volume, string, error) {
	var best *corev1.VolumeMount
	rel := ""
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		switch {
		case m.SubPath != "" && m.MountPath == file:
			best, rel = m, m.SubPath
		case m.SubPath == "" && strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/"):
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best, rel = m, strings.TrimPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
			}
		}
	}
	if best == nil {
		return nil, "", errors.New("no volumeMount holds it")
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.Name != best.Name {
			continue
		}
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		case v.Secret != nil:
			items = v.Secret.Items
		default:
			return v, "", fmt.Errorf("volume %q is neither a ConfigMap nor a Secret", v.Name)
		}
		if len(items) == 0 {
			return v, rel, nil // every key, each a file of its name
		}
		for _, it := range items {
			if it.Path == rel {
				return v, it.Key, nil
			}
		}
		return v, "", fmt.Errorf("volume %q's items project no %q", v.Name, rel)
	}
	return nil, "", fmt.Errorf("volumeMount %q names no volume", best.Name)
}

func hasCapability(c *corev1.Container, name corev1.Capability) bool {
	return c.SecurityContext != nil && c.SecurityContext.Capabilities != nil && slices.Contains(c.SecurityContext.Capabilities.Add, name)
}

// The manifests decode strictly into the Kubernetes types, hold together,
// and the ConfigMap's tether.toml passes `tether check` without warnings.
func TestKubernetesManifests(t *testing.T) {
	s := loadK8s(t)
	for _, p := range s.problems() {
		t.Error(p)
	}
	path := writeConfig(t, s.configMap.Data[k8sConfigKey])
	code, out, errOut := runCLI("check", "-c", path)
	if code != exitOK || !strings.Contains(out, ": ok") || strings.Contains(errOut, "warning") {
		t.Errorf("tether check on the ConfigMap's %s: exit %d\n%s%s", k8sConfigKey, code, out, errOut)
	}
}

// Each check fails when what it guards is broken.
func TestKubernetesChecksCatchBrokenManifests(t *testing.T) {
	tether := func(s *k8sSet) *corev1.Container { return &s.deployment.Spec.Template.Spec.Containers[0] }
	toml := func(old, new string) func(*k8sSet) {
		return func(s *k8sSet) {
			text := s.configMap.Data[k8sConfigKey]
			if !strings.Contains(text, old) {
				t.Errorf("the ConfigMap's config has no %q", old) // Errorf: a subtest calls this
			}
			s.configMap.Data[k8sConfigKey] = strings.Replace(text, old, new, 1)
		}
	}
	for _, tc := range []struct {
		name    string
		breakIt func(*k8sSet)
		want    string
	}{
		{"grace period shorter than preStop and the drain", func(s *k8sSet) {
			g := int64(30)
			s.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "terminationGracePeriodSeconds 30: want at least 45"},
		{"shutdown_timeout raised alone", toml(`shutdown_timeout = "30s"`, `shutdown_timeout = "60s"`), "terminationGracePeriodSeconds 45: want at least 75"},
		{"no preStop", func(s *k8sSet) { tether(s).Lifecycle = nil }, "no preStop"},
		{"readiness on another path", func(s *k8sSet) { tether(s).ReadinessProbe.HTTPGet.Path = "/readyz" }, `readinessProbe: path "/readyz", want "/ready"`},
		{"liveness on the virtual server's port", func(s *k8sSet) { tether(s).LivenessProbe.HTTPGet.Port = intstr.FromString("http") }, "livenessProbe: port http is 8080, the admin API listens on 9901"},
		{"a probe with the token", func(s *k8sSet) {
			tether(s).ReadinessProbe.HTTPGet.HTTPHeaders = []corev1.HTTPHeader{{Name: "Authorization", Value: "Bearer x"}}
		}, "readinessProbe: sends Authorization"},
		{"admin on loopback", toml(`listen = ":9901"`, `listen = "127.0.0.1:9901"`), "the kubelet probes the pod's IP"},
		{"admin on another port", toml(`listen = ":9901"`, `listen = ":9902"`), "the admin port 9902 is not a containerPort"},
		{"public admin without a token", toml(`token_file = "/etc/tether-admin/token"`, ``), "is not a loopback address: set token_file"},
		{"token file outside the Secret", toml(`token_file = "/etc/tether-admin/token"`, `token_file = "/etc/tether/token"`), `comes from volume "config", which is not a Secret`},
		{"config path not the ConfigMap's", func(s *k8sSet) { tether(s).Args[2] = "/etc/tether.toml" }, "config /etc/tether.toml: no volumeMount holds it"},
		{"virtual server port not a container port", toml(`listen = ":8080"`, `listen = ":8081"`), `virtual_server "web"'s port 8081 is not a containerPort`},
		{"virtual server on loopback", toml(`listen = ":8080"`, `listen = "127.0.0.1:8080"`), "not reachable at the pod's IP"},
		{"Service selects other pods", func(s *k8sSet) { s.service.Spec.Selector = map[string]string{"app.kubernetes.io/name": "web"} }, "does not select the Deployment's pods"},
		{"Service targets the admin API", func(s *k8sSet) { s.service.Spec.Ports[0].TargetPort = intstr.FromString("admin") }, "exposes the admin API"},
		{"Service targets an unknown port name", func(s *k8sSet) { s.service.Spec.Ports[0].TargetPort = intstr.FromString("https") }, "names no container port"},
		{"PDB selects other pods", func(s *k8sSet) {
			s.pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tether"}}
		}, "PodDisruptionBudget tether: selector"},
		{"PDB blocks every drain", func(s *k8sSet) { zero := intstr.FromInt32(0); s.pdb.Spec.MaxUnavailable = &zero }, "maxUnavailable 0 of 2 replicas"},
		{"PDB lets every pod go", func(s *k8sSet) { all := intstr.FromString("100%"); s.pdb.Spec.MaxUnavailable = &all }, "maxUnavailable 100% of 2 replicas"},
		{"Deployment selector misses its pods", func(s *k8sSet) { s.deployment.Spec.Template.Labels = map[string]string{"app": "tether"} }, "does not select its pod template's labels"},
		{"rolling update may stop a pod first", func(s *k8sSet) {
			one := intstr.FromInt32(1)
			s.deployment.Spec.Strategy.RollingUpdate.MaxUnavailable = &one
		}, "rollingUpdate.maxUnavailable 1: want 0"},
		{"one replica", func(s *k8sSet) { one := int32(1); s.deployment.Spec.Replicas = &one }, "replicas 1"},
		{"root", func(s *k8sSet) { s.deployment.Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil }, "tether needs no root"},
		{"writable root", func(s *k8sSet) { tether(s).SecurityContext.ReadOnlyRootFilesystem = nil }, "readOnlyRootFilesystem"},
		{"capabilities kept", func(s *k8sSet) { tether(s).SecurityContext.Capabilities.Drop = nil }, "want drop [ALL]"},
		{"no memory limit", func(s *k8sSet) { delete(tether(s).Resources.Limits, corev1.ResourceMemory) }, "resources.limits.memory is not set"},
		{"config with a warning", func(s *k8sSet) {
			toml("[admin]", "[tcp_profile.x]\nkeepalive_idle = \"600s\"\n[admin]")(s) // never fires before the 300 s idle timeout
			toml(`mode = "http"`, `mode = "http"`+"\nclient_profile = \"x\"")(s)
		}, "warning: tcp_profile \"x\""},
		{"config invalid", toml(`method = "least-conns"`, `method = "fastest"`), `method`},
		{"README without the Secret", func(s *k8sSet) { s.readme = strings.ReplaceAll(s.readme, "tether-admin-token", "x") }, "does not say how to create the Secret tether-admin-token"},
		{"README with stale figures", func(s *k8sSet) { s.readme = strings.ReplaceAll(s.readme, "45 s", "40 s") }, "does not say \"`terminationGracePeriodSeconds` is 45 s\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadK8s(t)
			tc.breakIt(s)
			got := s.problems()
			for _, p := range got {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("no problem containing %q; got %q", tc.want, got)
		})
	}
}

// Strict decoding refuses what the API server's strict field validation
// refuses, and a kind the examples do not use.
func TestKubernetesDecodingIsStrict(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(k8sDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	if _, err := decodeK8s("deployment.yaml", b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "  replicas: 2\n", "  replicas: 2\n  replica: 2\n", `unknown field "spec.replica"`},
		{"misspelt nested field", "          readinessProbe:\n", "          readinesProbe:\n", `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{"field in the wrong case", "  replicas: 2\n", "  Replicas: 2\n", `unknown field "spec.Replicas"`},
		{"duplicate key", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `key "replicas" already set`},
		{"wrong type", "  replicas: 2\n", "  replicas: two\n", `replicas`},
		{"unknown kind", "kind: Deployment\n", "kind: Deploymnet\n", `kind "Deploymnet" is none of`},
		{"old API version", "apiVersion: apps/v1\n", "apiVersion: extensions/v1beta1\n", `apiVersion "extensions/v1beta1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("deployment.yaml has no %q", tc.old)
			}
			_, err := decodeK8s("deployment.yaml", []byte(strings.Replace(good, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Several documents in one file, and an empty one, decode too.
	objs, err := decodeK8s("two.yaml", []byte("---\n# nothing\n---\n"+good+"\n---\n"+good))
	if err != nil || len(objs) != 2 {
		t.Errorf("two documents: %d objects, %v", len(objs), err)
	}
}

// The real binary, run with the ConfigMap's config (its addresses moved to
// 127.0.0.1, the token file to a temporary one), answers the kubelet's
// probes without the token while the rest of the admin API wants it.
func TestKubernetesConfigAnswersTheProbesWithoutTheToken(t *testing.T) {
	s := loadK8s(t)
	text := s.configMap.Data[k8sConfigKey]
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) {
		t.Helper()
		if n := strings.Count(text, strconv.Quote(old)); n != 1 {
			t.Fatalf("the config has %q %d times, want once", old, n)
		}
		text = strings.Replace(text, strconv.Quote(old), strconv.Quote(new), 1)
	}
	const token = "k8s-example-token"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr := socktest.FreeAddr(t)
	replace(cfg.Admin.Listen, adminAddr)
	replace(cfg.Admin.TokenFile, tokenFile)
	for _, vs := range cfg.VirtualServers {
		replace(vs.Listen, socktest.FreeAddr(t))
	}
	for _, p := range cfg.Pools {
		for _, m := range p.Members {
			replace(m.Address, socktest.DeadAddr(t)) // no DNS lookup leaves the machine
		}
	}
	proc := startBinary(t, writeConfig(t, text))

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	socktest.WaitFor(t, 10*time.Second, "GET /ready without the token answers 200", func() bool { return get("/ready", "") == 200 })
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/ready", "", 200},
		{"/api/v1/status", "", 401},
		{"/metrics", "", 401},
		{"/api/v1/status", "Bearer " + token, 200},
	} {
		if got := get(tc.path, tc.auth); got != tc.want {
			t.Errorf("GET %s with %q: %d, want %d\n%s", tc.path, tc.auth, got, tc.want, proc.stderr.String())
		}
	}
}
