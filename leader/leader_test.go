package leader

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestElection: of two replicas one leads; when it stops it releases
// the Lease and the other takes over.
func TestElection(t *testing.T) {
	leaseDuration, renewDeadline, retryPeriod = 2*time.Second, time.Second, 100*time.Millisecond
	client := fake.NewClientset()
	led := make(chan int, 2)
	var electors [2]*Elector
	var cancels [2]context.CancelFunc
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range electors {
		e, err := New(client, "agimo", DefaultLease, zerolog.Nop(), func() { led <- i })
		if err != nil {
			t.Fatal(err)
		}
		electors[i] = e
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		defer cancel()
		wg.Go(func() { e.Run(ctx) })
	}
	first := <-led
	if !electors[first].Leading() || electors[1-first].Leading() {
		t.Errorf("leading: %v, %v; want only replica %d", electors[0].Leading(), electors[1].Leading(), first)
	}
	l, err := client.CoordinationV1().Leases("agimo").Get(context.Background(), DefaultLease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		t.Fatalf("Lease agimo/%s = %+v, %v; want a holder", DefaultLease, l, err)
	}
	cancels[first]()
	if second := <-led; second != 1-first {
		t.Errorf("replica %d led again; want %d", second, 1-first)
	}
	if !electors[1-first].Leading() {
		t.Errorf("replica %d not leading after the takeover", 1-first)
	}
}

func TestNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "from-env")
	if got := Namespace("flag"); got != "flag" {
		t.Errorf("Namespace(flag) = %q; want flag", got)
	}
	if got := Namespace(""); got != "from-env" {
		t.Errorf("Namespace(\"\") = %q; want from-env", got)
	}
}
