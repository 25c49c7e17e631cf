package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeAPI is the API server behind fakeAPIServer: Services and
// EndpointSlices that a test can change while Agimo watches them (Put),
// so that a service turns ready as its pods would.
//
// Each Put is an event with the next resourceVersion; a list answers
// the current objects at the current version, and a watch from version
// v sends every later event of its resource, namespace and name (a
// field selector), then each new one as it is put. So no event falls
// between a list and the watch that follows it.
type fakeAPI struct {
	mu      sync.Mutex // guards everything below
	rv      int
	objs    map[string]metav1.Object // by objKey
	events  []fakeEvent
	changed chan struct{} // closed and replaced by each Put
}

type fakeEvent struct {
	rv   int
	kind string // "ADDED" or "MODIFIED"
	obj  metav1.Object
}

// newFakeAPI starts an API server holding objs and returns a kubeconfig
// for it and the server, to Put changes. Everything in namespace
// lockedNamespace is forbidden.
func newFakeAPI(t *testing.T, objs ...metav1.Object) (string, *fakeAPI) {
	t.Helper()
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	a := &fakeAPI{rv: 1, objs: map[string]metav1.Object{}, changed: make(chan struct{})}
	for _, o := range objs {
		a.objs[objKey(o)] = o
	}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/namespaces/"+lockedNamespace+"/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]any{
				"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
				"message": "forbidden: no RBAC for namespace " + lockedNamespace,
			})
			return
		}
		wantSlices := strings.Contains(r.URL.Path, "endpointslices")
		_, ns, _ := strings.Cut(r.URL.Path, "/namespaces/")
		ns, _, _ = strings.Cut(ns, "/")
		name := strings.TrimPrefix(r.URL.Query().Get("fieldSelector"), "metadata.name=")
		match := func(o metav1.Object) bool {
			_, isSlice := o.(*discoveryv1.EndpointSlice)
			return isSlice == wantSlices && (ns == "" || o.GetNamespace() == ns) && (name == "" || o.GetName() == name)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" {
			from, _ := strconv.Atoi(r.URL.Query().Get("resourceVersion"))
			a.serveWatch(w, r, done, from, match)
			return
		}
		kind, apiVersion := "ServiceList", "v1"
		if wantSlices {
			kind, apiVersion = "EndpointSliceList", "discovery.k8s.io/v1"
		}
		items := []any{}
		a.mu.Lock()
		for _, o := range a.objs {
			if match(o) {
				items = append(items, o)
			}
		}
		rv := a.rv
		a.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{
			"kind": kind, "apiVersion": apiVersion,
			"metadata": map[string]any{"resourceVersion": strconv.Itoa(rv)}, "items": items,
		})
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, srv.URL)
	return writeFile(t, "kubeconfig", kubeconfig), a
}

// serveWatch streams the events after version from that match, until the
// client leaves or the server closes.
func (a *fakeAPI) serveWatch(w http.ResponseWriter, r *http.Request, done <-chan struct{}, from int, match func(metav1.Object) bool) {
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	for {
		a.mu.Lock()
		var send []fakeEvent
		for _, ev := range a.events {
			if ev.rv > from && match(ev.obj) {
				send = append(send, ev)
			}
		}
		if n := len(a.events); n > 0 {
			from = max(from, a.events[n-1].rv)
		}
		changed := a.changed
		a.mu.Unlock()
		for _, ev := range send {
			if enc.Encode(map[string]any{"type": ev.kind, "object": typed(ev.obj)}) != nil {
				return
			}
		}
		w.(http.Flusher).Flush()
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-done:
			return
		}
	}
}

// Put adds or replaces objs (by kind, namespace and name), each one event
// for the watches.
func (a *fakeAPI) Put(objs ...metav1.Object) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, o := range objs {
		a.rv++
		o.SetResourceVersion(strconv.Itoa(a.rv))
		kind := "ADDED"
		if _, ok := a.objs[objKey(o)]; ok {
			kind = "MODIFIED"
		}
		a.objs[objKey(o)] = o
		a.events = append(a.events, fakeEvent{a.rv, kind, o})
	}
	close(a.changed)
	a.changed = make(chan struct{})
}

func objKey(o metav1.Object) string {
	_, isSlice := o.(*discoveryv1.EndpointSlice)
	return fmt.Sprintf("%t/%s/%s", isSlice, o.GetNamespace(), o.GetName())
}

// typed is o as JSON with its kind and apiVersion, which a watch event's
// object needs (a list's items take theirs from the list).
func typed(o metav1.Object) map[string]any {
	b, _ := json.Marshal(o)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["kind"], m["apiVersion"] = "Service", "v1"
	if _, ok := o.(*discoveryv1.EndpointSlice); ok {
		m["kind"], m["apiVersion"] = "EndpointSlice", "discovery.k8s.io/v1"
	}
	return m
}
