package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agimo/agimo/conf"
)

func testNginxParams(t *testing.T) nginxParams {
	return nginxParams{Prefix: t.TempDir(), Port: 18080, HTTPHost: hostHTTP, WebHost: hostWeb,
		HTTPUp: "127.0.0.1:19001", WebUp: "127.0.0.1:19002", Conns: 1000, Files: 500}
}

func TestNginxConfig(t *testing.T) {
	p := testNginxParams(t)
	c, err := nginxConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"worker_processes 1;",
		"worker_connections 1000;",
		"worker_rlimit_nofile 1000;", // raised to Conns
		"pid " + p.Prefix + "/nginx.pid;",
		"server 127.0.0.1:19001;",
		"server 127.0.0.1:19002;",
		"keepalive 1024;",
		`proxy_set_header Connection "";`,
		"proxy_request_buffering off;",
		"proxy_http_version 1.1;",
		"listen 127.0.0.1:18080",
		"server_name http.bench;",
		"server_name web.bench;",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_buffering off;",
		"access_log off;",
		"client_body_temp_path " + p.Prefix + "/tmp/body;",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Error("unbalanced braces")
	}
	// Nothing may point outside the prefix: nginx must not touch the
	// system's /var/lib/nginx or /run.
	for line := range strings.SplitSeq(c, "\n") {
		l := strings.TrimSpace(line)
		if strings.Contains(l, " /") && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "location /") &&
			!strings.Contains(l, p.Prefix) {
			t.Errorf("path outside the prefix: %q", line)
		}
	}
}

// TestNginxAcceptsConfig has nginx itself check the generated config,
// where nginx is installed.
func TestNginxAcceptsConfig(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Skip("nginx not installed")
		}
		bin = "/usr/sbin/nginx"
	}
	p := testNginxParams(t)
	os.MkdirAll(filepath.Join(p.Prefix, "tmp"), 0o755)
	c, err := nginxConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(p.Prefix, "nginx.conf")
	os.WriteFile(cf, []byte(c), 0o644)
	out, err := exec.Command(bin, "-t", "-p", p.Prefix, "-c", cf, "-e", filepath.Join(p.Prefix, "error.log"), "-g", "daemon off;").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, c)
	}
}

func TestAgimoConfigPassesAgimosParser(t *testing.T) {
	c := agimoConfig(benchNS, []agimoService{
		{Host: hostHTTP, Service: "hot-http", Address: "127.0.0.1:1234"},
		{Host: hostCold, Service: "cold", Address: "127.0.0.1:1235"},
	})
	cfg, err := conf.Parse(strings.NewReader(c))
	if err != nil {
		t.Fatalf("%v\n%s", err, c)
	}
	if len(cfg.Services) != 2 {
		t.Fatalf("%d services", len(cfg.Services))
	}
	s := cfg.Services[1]
	if s.Host != hostCold || s.ServiceName != "cold" || s.Namespace != benchNS || s.ServicePort != servicePort || s.TargetAddr() != "127.0.0.1:1235" {
		t.Errorf("service parsed as %+v", s)
	}
}

func TestParseKubeconfigExport(t *testing.T) {
	got, err := parseKubeconfigExport("\nexport KUBECONFIG=/tmp/cp/kubeconfig\n")
	if err != nil || got != "/tmp/cp/kubeconfig" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := parseKubeconfigExport("something else\n"); err == nil {
		t.Error("output without the export line accepted")
	}
}

// The edge agimo's services carry issue 11's keys exactly as named there,
// and only where set.
func TestAgimoConfigEdgeKeys(t *testing.T) {
	c := agimoConfig(benchNS, []agimoService{
		{Host: hostHTTP, Service: "hot-http", Address: "127.0.0.1:1234", CertFile: "/c.pem", KeyFile: "/k.pem"},
		{Host: hostGRPC, Service: "hot-grpc", Address: "127.0.0.1:1235", Protocol: "h2c"},
	})
	first, second, _ := strings.Cut(c, hostGRPC)
	for _, want := range []string{"tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n"} {
		if !strings.Contains(first, want) {
			t.Errorf("http.bench's service lacks %q:\n%s", want, c)
		}
	}
	if !strings.Contains(second, "protocol = \"h2c\"\n") || strings.Contains(second, "tls_") {
		t.Errorf("grpc.bench's service: got\n%s\nwant protocol = \"h2c\" and no TLS keys", second)
	}
	if strings.Contains(first, "protocol") {
		t.Errorf("http.bench's service has a protocol key:\n%s", first)
	}
}
