//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statusView is the part of /status's JSON the test reads, by its documented names.
type statusView struct {
	LastReload *struct {
		Result, Error string
	} `json:"last_reload"`
	Routes []struct {
		Host, Source, Service, Workload, State string
		ExactPaths                             []string `json:"exact_paths"`
		Endpoints                              []string
		Parked                                 int64
		ColdStart                              *statusCold  `json:"cold_start"`
		ColdStarts                             []statusCold `json:"cold_starts"`
		Scaling                                struct {
			Wake     bool
			LastWake *time.Time `json:"last_wake"`
		}
	}
}

type statusCold struct {
	Scale     *float64 `json:"scale_seconds"`
	Ready     *float64 `json:"ready_seconds"`
	FirstByte *float64 `json:"first_byte_seconds"`
	Failed    bool
}

// statusJSON fetches /status as JSON and returns host's route (fails if absent) and the view.
func (a *agimoProc) statusJSON(t *testing.T, host string) (int, *statusView) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.MetricsAddr+"/status", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v statusView
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/json" {
		t.Fatalf("/status: %d %s; want 200 application/json", resp.StatusCode, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	for i, r := range v.Routes {
		if r.Host == host {
			return i, &v
		}
	}
	t.Fatalf("/status has no route %s: %+v", host, v.Routes)
	return 0, nil
}

// The status page (issue 14) against the real binary: its JSON follows a cold start (parked,
// woken, ready, first byte) and a rejected reload; Debian's chromium, headless, renders the
// HTML: its DOM names each route with its state, and its screenshot is an image of the
// window's size, not blank, with the "ready" badge's colour in it.
func TestStatusPage(t *testing.T) {
	ns := newNamespace(t)
	web := createWorkload(t, ns, "web", "deployment")
	idle := createWorkload(t, ns, "idle", "statefulset")
	pod := startPod(t, "web-status")
	a := startAgimo(t, "timeout = '60s'\n"+web.Config("wake = true")+idle.Config(), agimoOpts{})

	up := web.watchScaleUp(t)
	parked := a.getAsync(web.Host(), "/cold")
	a.waitParked(t, web.Host(), 1)
	up.wait(t, 20*time.Second)
	// The wake-up's outcome is recorded once its API call has returned.
	eventually(t, 5*time.Second, "the wake-up in /status", func() bool {
		i, v := a.statusJSON(t, web.Host())
		return v.Routes[i].Scaling.LastWake != nil
	})
	i, v := a.statusJSON(t, web.Host())
	r := v.Routes[i]
	if r.State != "starting" || r.Parked != 1 || r.ColdStart == nil || r.ColdStart.Scale == nil || r.ColdStart.Ready != nil ||
		len(r.Endpoints) != 0 || !r.Scaling.Wake {
		t.Errorf("parked: %+v; want starting, 1 parked, a cold start under way, scaled, not ready", r)
	}
	if want := fmt.Sprintf("%s/web:80", ns); r.Service != want || r.Source != "file" || r.Workload != "deployment "+ns+"/web" {
		t.Errorf("service %q, source %q, workload %q; want %q, file, deployment %s/web", r.Service, r.Source, r.Workload, want, ns)
	}

	web.bootPod(t, pod)
	expectFrom(t, awaitResult(t, parked, 30*time.Second), pod)
	i, v = a.statusJSON(t, web.Host())
	r = v.Routes[i]
	if r.State != "ready" || r.Parked != 0 || r.ColdStart != nil || len(r.Endpoints) != 1 {
		t.Errorf("ready: %+v; want ready, nothing parked, one endpoint", r)
	}
	if len(r.ColdStarts) != 1 || r.ColdStarts[0].Ready == nil || r.ColdStarts[0].FirstByte == nil || r.ColdStarts[0].Failed {
		t.Errorf("cold_starts %+v; want one, with its ready and first byte phases", r.ColdStarts)
	} else if c := r.ColdStarts[0]; c.Scale == nil || !(*c.Scale <= *c.Ready && *c.Ready <= *c.FirstByte) {
		t.Errorf("phases scale %v, ready %v, first byte %v; want all three, in that order", c.Scale, *c.Ready, *c.FirstByte)
	}
	if i, v := a.statusJSON(t, idle.Host()); v.Routes[i].State != "cold" || v.LastReload != nil {
		t.Errorf("idle: %+v, last reload %+v; want cold, no reload yet", v.Routes[i], v.LastReload)
	}

	// A rejected reload shows with its error; the routes in force stay.
	writeAtomic(t, a.ConfPath, "timeout = 'soon'\n"+web.Config("wake = true")+idle.Config())
	eventually(t, reloadWithin, "the rejected reload in /status", func() bool {
		_, v := a.statusJSON(t, web.Host())
		return v.LastReload != nil
	})
	if _, v := a.statusJSON(t, web.Host()); v.LastReload.Result != "error" || !strings.Contains(v.LastReload.Error, "timeout") {
		t.Errorf("last_reload %+v; want an error naming timeout", v.LastReload)
	}

	url := "http://" + a.MetricsAddr + "/status"
	dom := chromium(t, "--dump-dom", url)
	for _, want := range []string{
		fmt.Sprintf(`data-host="%s" data-state="ready"`, web.Host()),
		fmt.Sprintf(`data-host="%s" data-state="cold"`, idle.Host()),
		`<span class="state ready">ready</span>`, "first byte", `id="reload-result"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("chromium's DOM lacks %s:\n%s", want, dom)
		}
	}

	const width, height = 1280, 720
	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot="+shot, url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	checkScreenshot(t, img, width, height)
}

// checkScreenshot fails unless img is width×height, has ink on more than 1% of it, and shows
// the "ready" badge's background (#d9f2d9, within rounding).
func checkScreenshot(t *testing.T, img image.Image, width, height int) {
	t.Helper()
	b := img.Bounds()
	if b.Dx() != width || b.Dy() != height {
		t.Fatalf("screenshot is %dx%d; want %dx%d", b.Dx(), b.Dy(), width, height)
	}
	near := func(v uint32, want int) bool { d := int(v>>8) - want; return d >= -3 && d <= 3 }
	var ink, badge int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 < 0xf0 || g>>8 < 0xf0 || bl>>8 < 0xf0 {
				ink++
			}
			if near(r, 0xd9) && near(g, 0xf2) && near(bl, 0xd9) {
				badge++
			}
		}
	}
	if ink*100 < width*height {
		t.Errorf("screenshot is blank: %d of %d pixels not white", ink, width*height)
	}
	if badge < 50 {
		t.Errorf("screenshot has %d pixels of the ready badge's colour; want a badge", badge)
	}
	t.Logf("screenshot %dx%d: %d pixels of ink, %d of the ready badge", width, height, ink, badge)
}

// chromium runs Debian's chromium, headless, once on url with args and returns its stdout.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found on PATH: run hack/tools.sh (Debian's chromium)")
	}
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// As root (the suite is): no sandbox. A profile of its own, no network but the page's.
	cmd := exec.CommandContext(c, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-sync", "--disable-background-networking", "--disable-component-update", "--no-proxy-server",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its helpers (zygote, renderer) go with it when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v; stderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // a helper that outlived it, if any
	return stdout.String()
}
