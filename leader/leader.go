// Package leader elects the one Agimo replica that writes the status of
// the Ingresses and Gateway API objects it serves (issue 12): client-go
// leader election on a coordination.k8s.io Lease. Every replica serves
// routes; only status writes are the leader's, so replicas never undo
// each other's writes.
package leader

import (
	"context"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// DefaultLease is the Lease's name.
const DefaultLease = "agimo-status"

// client-go's recommended durations (leaderelection.go); tests shorten
// them.
var (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Elector runs the election; Leading is safe for concurrent use.
type Elector struct {
	leading atomic.Bool
	le      *leaderelection.LeaderElector
}

// New makes an elector on the Lease namespace/name; onLead runs (in its
// own goroutine, which Run waits for) each time this replica becomes
// the leader.
func New(client kubernetes.Interface, namespace, name string, log zerolog.Logger, onLead func()) (*Elector, error) {
	host, _ := os.Hostname()
	id := host + "_" + string(uuid.NewUUID())
	e := &Elector{}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     retryPeriod,
		ReleaseOnCancel: true, // a stopping leader hands over at once
		Name:            name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				e.leading.Store(true)
				log.Info().Str("lease", namespace+"/"+name).Str("identity", id).Msg("leader: writing status")
				if onLead != nil {
					onLead()
				}
			},
			OnStoppedLeading: func() {
				if e.leading.Swap(false) {
					log.Info().Str("lease", namespace+"/"+name).Msg("leader: no longer writing status")
				}
			},
		},
	})
	if err != nil {
		return nil, err
	}
	e.le = le
	return e, nil
}

// Leading reports whether this replica is the leader now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Run takes part in the election until ctx is done, standing again
// after each loss of the Lease.
func (e *Elector) Run(ctx context.Context) {
	for ctx.Err() == nil {
		e.le.Run(ctx) // returns when leadership is lost or ctx is done
	}
}

// Namespace is where the Lease lives: flag, else $POD_NAMESPACE, else
// the in-cluster service account's namespace, else "default".
func Namespace(flag string) string {
	if flag != "" {
		return flag
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return string(b)
	}
	return "default"
}
