//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Issue 7, hot reload: the config file is polled (following symlinks, so a mounted
// ConfigMap's ..data swap is seen) and SIGHUP reloads it; an invalid config is rejected
// while the old one serves; services that stay lose no request.

// writeAtomic replaces path's content in one step (write a temporary file, rename it over),
// as editors and config management tools do.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// configMapVolume lays out a directory the way the kubelet mounts a ConfigMap:
// config.toml -> ..data/config.toml, ..data -> ..<timestamp>/; an update writes a new
// timestamped directory, swaps ..data to it with a rename, and removes the old one.
type configMapVolume struct {
	dir string
	n   int
}

func newConfigMapVolume(t *testing.T, content string) *configMapVolume {
	t.Helper()
	v := &configMapVolume{dir: t.TempDir()}
	v.update(t, content)
	if err := os.Symlink(filepath.Join("..data", "config.toml"), v.path()); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *configMapVolume) path() string { return filepath.Join(v.dir, "config.toml") }

func (v *configMapVolume) update(t *testing.T, content string) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_01_02_15_04_%02d.%09d", v.n, v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, ts, "config.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(v.dir, "..data")
	old, _ := os.Readlink(data)
	if err := os.Symlink(ts, data+"_tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data+"_tmp", data); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// warmWorkload is a Deployment at one replica with fake pod p ready behind it.
func warmWorkload(t *testing.T, ns, name string, p *fakePod) workload {
	t.Helper()
	w := createWorkload(t, ns, name, "deployment")
	names := w.scale(t, 1)
	w.setEndpoints(t, readyEndpoint(p, names[0]))
	return w
}

// waitRouted waits until host is served by pod p (after a reload added or changed it).
func (a *agimoProc) waitRouted(t *testing.T, d time.Duration, host string, p *fakePod) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, d, host+" routed to "+p.Name, func() bool {
		r := a.get(host, "/")
		return r.Status == 200 && strings.Contains(r.Body, "pod="+p.Name+" ")
	})
	return time.Since(start)
}

// waitUnrouted waits until host gets 404 (after a reload removed it).
func (a *agimoProc) waitUnrouted(t *testing.T, d time.Duration, host string) {
	t.Helper()
	eventually(t, d, host+" removed (404)", func() bool { return a.get(host, "/").Status == 404 })
}

// watchGrace: a change made right after /readyz may come before agimo's file watch takes
// its first look, and be lost (TestReloadChangeDuringStartup); tests of later changes wait
// this long first.
const watchGrace = 500 * time.Millisecond

const (
	reloadsOK  = `agimo_config_reloads_total{result="ok"}`
	reloadsErr = `agimo_config_reloads_total{result="error"}`
	reloadGood = `agimo_config_last_reload_successful`
	// The file is polled every 2 s, then new services' informers sync.
	reloadWithin = 8 * time.Second
)

// Rewriting the config file adds and removes services without a restart.
func TestReloadFileChange(t *testing.T) {
	ns := newNamespace(t)
	pa, pb := startPod(t, "a-0"), startPod(t, "b-0")
	a, b := warmWorkload(t, ns, "a", pa), warmWorkload(t, ns, "b", pb)
	p := startAgimo(t, a.Config(), agimoOpts{})
	p.waitRouted(t, 20*time.Second, a.Host(), pa)
	time.Sleep(watchGrace)
	if r := p.get(b.Host(), "/"); r.Status != 404 {
		t.Fatalf("b before the reload: %d; want 404", r.Status)
	}

	writeAtomic(t, p.ConfPath, a.Config()+b.Config())
	took := p.waitRouted(t, reloadWithin, b.Host(), pb)
	t.Logf("service added by a file change: routed after %s", took.Round(time.Millisecond))
	expectFrom(t, p.get(a.Host(), "/"), pa)
	if ok, good := p.metric(t, reloadsOK), p.metric(t, reloadGood); ok != 1 || good != 1 {
		t.Errorf("%s = %v, %s = %v; want 1, 1", reloadsOK, ok, reloadGood, good)
	}

	writeAtomic(t, p.ConfPath, b.Config())
	p.waitUnrouted(t, reloadWithin, a.Host())
	expectFrom(t, p.get(b.Host(), "/"), pb)
}

// A config mounted from a ConfigMap: the kubelet updates it by swapping the ..data
// symlink to a new directory; Agimo sees each swap.
func TestReloadConfigMapSwap(t *testing.T) {
	ns := newNamespace(t)
	pa, pb := startPod(t, "a-0"), startPod(t, "b-0")
	a, b := warmWorkload(t, ns, "a", pa), warmWorkload(t, ns, "b", pb)
	vol := newConfigMapVolume(t, a.Config())
	p := startAgimo(t, "", agimoOpts{confPath: vol.path()})
	p.waitRouted(t, 20*time.Second, a.Host(), pa)
	time.Sleep(watchGrace)

	vol.update(t, a.Config()+b.Config())
	took := p.waitRouted(t, reloadWithin, b.Host(), pb)
	t.Logf("ConfigMap ..data swap: new service routed after %s", took.Round(time.Millisecond))
	vol.update(t, b.Config()) // and the next swap, the first target now deleted
	p.waitUnrouted(t, reloadWithin, a.Host())
	expectFrom(t, p.get(b.Host(), "/"), pb)
	if ok := p.metric(t, reloadsOK); ok != 2 {
		t.Errorf("%s = %v after two swaps; want 2", reloadsOK, ok)
	}
}

// An invalid config is rejected with an error log line and metrics; the previous config
// keeps serving, and the next valid one is taken.
func TestReloadInvalidConfig(t *testing.T) {
	ns := newNamespace(t)
	pa, pb := startPod(t, "a-0"), startPod(t, "b-0")
	a, b := warmWorkload(t, ns, "a", pa), warmWorkload(t, ns, "b", pb)
	p := startAgimo(t, a.Config(), agimoOpts{})
	p.waitRouted(t, 20*time.Second, a.Host(), pa)
	time.Sleep(watchGrace)

	writeAtomic(t, p.ConfPath, "timeout = 'soon'\n"+a.Config()+b.Config("servcie_port = 80"))
	eventually(t, reloadWithin, "the invalid config rejected", func() bool { return p.metric(t, reloadsErr) == 1 })
	line := p.waitLog(t, 5*time.Second, `"level":"error"`, "config reload rejected")
	t.Logf("rejection logged: %s", line)
	for _, want := range []string{"timeout", "servcie_port"} {
		if !strings.Contains(line, want) {
			t.Errorf("the error log line does not name %q", want)
		}
	}
	if good := p.metric(t, reloadGood); good != 0 {
		t.Errorf("%s = %v after a rejected reload; want 0", reloadGood, good)
	}
	for range 5 {
		expectFrom(t, p.get(a.Host(), "/"), pa) // the old config serves on
	}
	if r := p.get(b.Host(), "/"); r.Status != 404 {
		t.Errorf("b, only in the rejected config: %d; want 404", r.Status)
	}

	writeAtomic(t, p.ConfPath, a.Config()+b.Config())
	p.waitRouted(t, reloadWithin, b.Host(), pb)
	if ok, errs, good := p.metric(t, reloadsOK), p.metric(t, reloadsErr), p.metric(t, reloadGood); ok != 1 || errs != 1 || good != 1 {
		t.Errorf("reloads ok %v, error %v, last successful %v; want 1, 1, 1", ok, errs, good)
	}
}

// SIGHUP reloads. The file is changed so that polling cannot see it (same inode, size and
// mtime): only the signal can make Agimo read it.
func TestReloadSIGHUP(t *testing.T) {
	ns := newNamespace(t)
	pa, pb := startPod(t, "a-0"), startPod(t, "b-0")
	a, b := warmWorkload(t, ns, "a", pa), warmWorkload(t, ns, "b", pb)
	before, after := "one."+b.Host(), "two."+b.Host() // same length
	p := startAgimo(t, a.Config()+b.ConfigFor(before), agimoOpts{})
	p.waitRouted(t, 20*time.Second, before, pb)

	fi, err := os.Stat(p.ConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.ConfPath, []byte(a.Config()+b.ConfigFor(after)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p.ConfPath, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // more than a poll interval: polling saw nothing
	if r := p.get(after, "/"); r.Status != 404 {
		t.Fatalf("%s routed before SIGHUP (%d): the change was not invisible to polling", after, r.Status)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	took := p.waitRouted(t, 5*time.Second, after, pb)
	t.Logf("SIGHUP: reloaded, new host routed after %s", took.Round(time.Millisecond))
	p.waitUnrouted(t, time.Second, before)
	expectFrom(t, p.get(a.Host(), "/"), pa)
	if ok := p.metric(t, reloadsOK); ok != 1 {
		t.Errorf("%s = %v; want 1", reloadsOK, ok)
	}
}

// Reloads that add and remove a service (each one replacing the namespace's informers)
// under light continuous load on services that stay: no request to them fails, on new or
// kept-alive connections, and a request parked on a cold service that stays is released.
func TestReloadUnderLoad(t *testing.T) {
	const reloads, workers = 8, 4
	ns := newNamespace(t)
	pa, pb, pc := startPod(t, "a-0"), startPod(t, "b-0"), startPod(t, "c-0")
	a, b := warmWorkload(t, ns, "a", pa), warmWorkload(t, ns, "b", pb)
	c := createWorkload(t, ns, "c", "deployment") // cold: at zero
	stay := "timeout = '60s'\n" + a.Config() + c.Config()
	p := startAgimo(t, stay, agimoOpts{})
	p.waitRouted(t, 20*time.Second, a.Host(), pa)
	parked := p.getAsync(c.Host(), "/parked-across-reloads")
	p.waitParked(t, c.Host(), 1)

	var (
		mu       sync.Mutex
		total    int
		failures []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for i := range workers {
		client := plainClient // a new connection per request
		if i%2 == 1 {
			client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}} // keep-alive
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				r := p.getVia(client, a.Host(), fmt.Sprintf("/w%d-%d", i, n), nil)
				mu.Lock()
				total++
				if r.Err != nil || r.Status != 200 || !strings.Contains(r.Body, "pod="+pa.Name+" ") {
					failures = append(failures, fmt.Sprintf("worker %d #%d: %d %v %q", i, n, r.Status, r.Err, r.Body))
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	start := time.Now()
	for i := range reloads {
		if i%2 == 0 {
			writeAtomic(t, p.ConfPath, stay+b.Config())
			p.cmd.Process.Signal(syscall.SIGHUP)
			p.waitRouted(t, reloadWithin, b.Host(), pb)
		} else {
			writeAtomic(t, p.ConfPath, stay)
			p.cmd.Process.Signal(syscall.SIGHUP)
			p.waitUnrouted(t, reloadWithin, b.Host())
		}
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("%d reloads in %s under load: %d requests to the staying service, %d failed (%.0f reloads ok counted)",
		reloads, elapsed.Round(time.Millisecond), total, len(failures), p.metric(t, reloadsOK))
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during reloads, e.g. %v", len(failures), total, failures[:min(5, len(failures))])
	}
	if total < 100 {
		t.Errorf("only %d requests during the reloads; the load did not run", total)
	}

	names := c.scale(t, 1)
	c.setEndpoints(t, readyEndpoint(pc, names[0]))
	expectFrom(t, awaitResult(t, parked, 30*time.Second), pc)
}

// A config change made while Agimo starts (here: waiting for its informer caches to sync,
// because its RBAC is applied after its pod started, as a helm install may do) must not be
// lost: once serving, Agimo runs the file's current content.
func TestReloadChangeDuringStartup(t *testing.T) {
	agimoNS, appNS := newNamespace(t), newNamespace(t)
	release := "agimo-" + agimoNS[len(agimoNS)-4:]
	_, err := env.client.CoreV1().ServiceAccounts(agimoNS).Create(ctx(t),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: release}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := tokenKubeconfig(t, agimoNS, release)
	pa, pb := startPod(t, "a-0"), startPod(t, "b-0")
	a, b := warmWorkload(t, appNS, "a", pa), warmWorkload(t, appNS, "b", pb)

	p := startAgimo(t, a.Config(), agimoOpts{kubeconfig: kc, noWait: true})
	p.waitLog(t, 30*time.Second, "forbidden") // config loaded, caches not synced
	writeAtomic(t, p.ConfPath, a.Config()+b.Config())
	installChartRBAC(t, agimoNS, release)
	p.waitReady(t, 60*time.Second)
	p.waitRouted(t, 10*time.Second, a.Host(), pa)
	start := time.Now()
	eventually(t, reloadWithin, "the config written during start-up to be served ("+b.Host()+" routed)", func() bool {
		r := p.get(b.Host(), "/")
		return r.Status == 200 && strings.Contains(r.Body, "pod="+pb.Name+" ")
	})
	t.Logf("config changed during start-up: served %s after ready", time.Since(start).Round(time.Millisecond))
}
