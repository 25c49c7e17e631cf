package load

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: each power-of-two range of
// values is split into 2^subBits buckets, so a recorded value is known to
// within 1/2^subBits (0.8%) of itself. Exact percentiles would need every
// sample kept; millions of requests per run make that too costly to merge
// and to write into the JSON results.
const (
	subBits  = 7
	subCount = 1 << subBits
)

// Hist is a log-linear histogram of durations in nanoseconds, in the
// spirit of HdrHistogram. It is not safe for concurrent use: each load
// worker fills its own and they are merged at the end.
type Hist struct {
	counts   []uint64 // by bucket index; grown on demand
	n        uint64
	min, max int64
	sum      float64
}

// NewHist returns an empty histogram.
func NewHist() *Hist { return &Hist{min: math.MaxInt64} }

// bucket returns the index of the bucket holding v (v >= 0).
func bucket(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return subCount + shift*subCount + int(v>>shift) - subCount
}

// bucketRange returns the smallest and largest value bucket i holds.
func bucketRange(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	shift := (i - subCount) / subCount
	mant := int64(subCount + (i-subCount)%subCount)
	return mant << shift, (mant+1)<<shift - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Hist) Record(d time.Duration) {
	v := max(int64(d), 0)
	i := bucket(v)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds every sample of o to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest sample, exact.
func (h *Hist) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Min is the smallest sample, exact.
func (h *Hist) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Mean is the average sample, exact.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// sample that at least q of all samples are less than or equal to, as the
// midpoint of its bucket (within 0.4%), clamped to the exact min and max.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Point is one step of a cumulative distribution: the fraction of samples
// at or below Value.
type Point struct {
	Value    time.Duration
	Fraction float64
}

// CDF returns the distribution as cumulative points, one per non-empty
// bucket (at its upper bound, clamped to max), for plotting.
func (h *Hist) CDF() []Point {
	var pts []Point
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		_, hi := bucketRange(i)
		pts = append(pts, Point{time.Duration(min(hi, h.max)), float64(seen) / float64(h.n)})
	}
	return pts
}

// histJSON is Hist's wire form: the non-empty buckets as [index, count]
// pairs, so a result file stays small yet holds every raw figure.
type histJSON struct {
	Count   uint64      `json:"count"`
	MinNS   int64       `json:"min_ns"`
	MaxNS   int64       `json:"max_ns"`
	SumNS   float64     `json:"sum_ns"`
	SubBits int         `json:"sub_bits"`
	Buckets [][2]uint64 `json:"buckets"`
}

// MarshalJSON writes the sparse bucket form.
func (h *Hist) MarshalJSON() ([]byte, error) {
	j := histJSON{Count: h.n, SumNS: h.sum, SubBits: subBits, Buckets: [][2]uint64{}}
	if h.n > 0 {
		j.MinNS, j.MaxNS = h.min, h.max
	}
	for i, c := range h.counts {
		if c > 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.SubBits != subBits {
		return fmt.Errorf("histogram precision %d bits, want %d", j.SubBits, subBits)
	}
	*h = *NewHist()
	for _, b := range j.Buckets {
		if b[0] > 1<<16 {
			return fmt.Errorf("histogram bucket %d out of range", b[0])
		}
		i := int(b[0])
		if i >= len(h.counts) {
			h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
		}
		h.counts[i] += b[1]
		h.n += b[1]
	}
	if h.n != j.Count {
		return fmt.Errorf("histogram buckets hold %d samples, header says %d", h.n, j.Count)
	}
	if h.n > 0 {
		h.min, h.max = j.MinNS, j.MaxNS
	}
	h.sum = j.SumNS
	return nil
}
