package certs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/agimo/agimo/conf"
)

// outcome is one load attempt the Store reported.
type outcome struct {
	id  string
	err error
}

// rig is a Store on a fake API server, with the signals tests wait on.
type rig struct {
	t   *testing.T
	cs  *fake.Clientset
	st  *Store
	set *metrics.Set
	// outcomes receives every load attempt after New.
	outcomes chan outcome
	// watches receives the field selector of each Secret watch started:
	// client-go's fake API server does not replay changes made before a
	// watch starts, so a test changes a Secret only after its watch runs.
	watches chan string
	// lists receives the field selector of each Secret list.
	lists chan string
}

// newRig loads the config src (the services' files may point into dir)
// and returns a started Store over a fake API server holding objs.
func newRig(t *testing.T, src string, objs ...runtime.Object) *rig {
	t.Helper()
	r := newRigUnstarted(t, src, objs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.st.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The first lists have been handled: drop their outcomes, so that
	// tests wait for those of the changes they make.
	for {
		select {
		case <-r.outcomes:
		default:
			return r
		}
	}
}

func newRigUnstarted(t *testing.T, src string, objs ...runtime.Object) *rig {
	t.Helper()
	r := &rig{
		t: t, cs: fake.NewClientset(objs...), set: metrics.NewSet(),
		outcomes: make(chan outcome, 100), watches: make(chan string, 100), lists: make(chan string, 100),
	}
	r.cs.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.lists <- a.(k8stesting.ListAction).GetListRestrictions().Fields.String()
		return false, nil, nil
	})
	r.cs.PrependWatchReactor("secrets", func(a k8stesting.Action) (bool, apiwatch.Interface, error) {
		// Answer the watch here, registered before the signal, rather
		// than letting the default reactor register it after.
		w, err := r.cs.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		r.watches <- a.(k8stesting.WatchAction).GetWatchRestrictions().Fields.String()
		return true, w, nil
	})
	cfg := loadConf(t, src)
	st, err := New(cfg, r.cs, Options{Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: r.set, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	st.changed = func(id string, err error) { r.outcomes <- outcome{id, err} }
	r.st = st
	t.Cleanup(st.Stop)
	return r
}

// loadConf writes src to a file and loads it as Agimo does.
func loadConf(t *testing.T, src string) *conf.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agimo.toml")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := conf.Load(p)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// service is a [[services]] entry for host with extra keys.
func service(host string, extra ...string) string {
	name := strings.SplitN(host, ".", 2)[0]
	return "[[services]]\nhost = \"" + host + "\"\ntype = \"deploy\"\nnamespace = \"apps\"\nname = \"" + name +
		"\"\nservice_name = \"" + name + "\"\nservice_port = 80\n" + strings.Join(extra, "\n") + "\n"
}

// tlsSecret is a kubernetes.io/tls Secret holding l.
func tlsSecret(ns, name string, l leaf) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: l.certPEM, corev1.TLSPrivateKeyKey: l.keyPEM},
	}
}

// writePair writes l's files into dir as name.crt and name.key, each by
// a rename so no reader sees half a file, and returns their paths.
func writePair(t *testing.T, dir, name string, l leaf) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for _, f := range []struct {
		path string
		data []byte
	}{{certFile, l.certPEM}, {keyFile, l.keyPEM}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// waitOutcome waits for the next load attempt of source id, skipping
// those of other sources and, with wantOK, failed ones (a file pair
// caught half-rotated); it returns the error of the attempt it stopped at.
func (r *rig) waitOutcome(t *testing.T, id string, wantOK bool) error {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case o := <-r.outcomes:
			if o.id == id && (o.err == nil || !wantOK) {
				return o.err
			}
		case <-timeout:
			t.Fatalf("no load attempt of %s reported", id)
		}
	}
}

// waitWatch waits until the watch of a Secret runs.
func (r *rig) waitWatch(name string) {
	r.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case sel := <-r.watches:
			if sel == "metadata.name="+name {
				return
			}
		case <-timeout:
			r.t.Fatalf("the watch of Secret %s never started", name)
		}
	}
}

// metric returns the value of the series named name ("" if absent).
func (r *rig) metric(name string) string {
	var b strings.Builder
	r.set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func (r *rig) updateSecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	if _, err := r.cs.CoreV1().Secrets(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
