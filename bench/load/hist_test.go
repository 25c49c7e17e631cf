package load

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	// Consecutive buckets tile the number line with no gap or overlap,
	// and each value lands in the bucket whose range holds it.
	var next int64
	for i := range 40 * subCount {
		lo, hi := bucketRange(i)
		if lo != next || hi < lo {
			t.Fatalf("bucket %d = [%d, %d], want it to start at %d", i, lo, hi, next)
		}
		for _, v := range []int64{lo, hi, lo + (hi-lo)/2} {
			if b := bucket(v); b != i {
				t.Fatalf("value %d in bucket %d, want %d", v, b, i)
			}
		}
		// Relative width: the precision promised in subBits' comment.
		if lo >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount+1e-12 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its values", i, lo, hi, subCount)
		}
		next = hi + 1
	}
}

// exactQuantile is the nearest-rank quantile of sorted samples.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestQuantilesMatchExactWithinPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 7, 1000, 100000} {
		h := NewHist()
		var vals []int64
		for range n {
			// Log-normal-ish latencies from 10µs to seconds.
			v := int64(math.Exp(r.NormFloat64()*1.5+math.Log(500e3))) + 10e3
			vals = append(vals, v)
			h.Record(time.Duration(v))
		}
		slices.Sort(vals)
		for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
			want := float64(exactQuantile(vals, q))
			got := float64(h.Quantile(q))
			if math.Abs(got-want)/want > 0.5/subCount+1e-9 {
				t.Errorf("n=%d q=%v: %v, exact %v (off by %.2f%%)", n, q, got, want, 100*math.Abs(got-want)/want)
			}
		}
		if h.Max() != time.Duration(vals[n-1]) || h.Min() != time.Duration(vals[0]) {
			t.Errorf("n=%d: min/max %v/%v, want exact %v/%v", n, h.Min(), h.Max(), vals[0], vals[n-1])
		}
	}
}

func TestSmallValuesAreExact(t *testing.T) {
	h := NewHist()
	for v := range 100 {
		h.Record(time.Duration(v + 1))
	}
	if q := h.Quantile(.5); q != 50 {
		t.Errorf("median of 1..100 = %d, want 50", q)
	}
	if q := h.Quantile(.99); q != 99 {
		t.Errorf("p99 of 1..100 = %d, want 99", q)
	}
}

func TestEmptyAndNegative(t *testing.T) {
	h := NewHist()
	if h.Quantile(.5) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 || len(h.CDF()) != 0 {
		t.Error("empty histogram reports samples")
	}
	h.Record(-time.Second)
	if h.Count() != 1 || h.Max() != 0 {
		t.Errorf("negative sample: count %d max %v, want 1 and 0", h.Count(), h.Max())
	}
}

func TestMergeEqualsRecordingTogether(t *testing.T) {
	a, b, all := NewHist(), NewHist(), NewHist()
	for i := range 5000 {
		d := time.Duration(i*i) * time.Nanosecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(NewHist())
	for _, q := range []float64{.1, .5, .99, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %v, together %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Mean() != all.Mean() || a.Min() != all.Min() {
		t.Error("merged count, mean or min differ")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	h := NewHist()
	for _, v := range []time.Duration{3, 150, 1e6, 2e6, 2e6, 3e9} {
		h.Record(v)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var g Hist
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for _, q := range []float64{.1, .5, .8, 1} {
		if g.Quantile(q) != h.Quantile(q) {
			t.Errorf("q=%v after round trip: %v, want %v", q, g.Quantile(q), h.Quantile(q))
		}
	}
	if g.Count() != h.Count() || g.Max() != h.Max() || g.Min() != h.Min() || g.Mean() != h.Mean() {
		t.Error("count, min, max or mean lost in JSON")
	}
	if err := json.Unmarshal([]byte(`{"count":5,"sub_bits":7,"buckets":[[1,2]]}`), &g); err == nil {
		t.Error("inconsistent count accepted")
	}
	if err := json.Unmarshal([]byte(`{"count":0,"sub_bits":3,"buckets":[]}`), &g); err == nil {
		t.Error("other precision accepted")
	}
}

func TestCDFIsMonotoneAndEndsAtOne(t *testing.T) {
	h := NewHist()
	for i := range 1000 {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	pts := h.CDF()
	for i := 1; i < len(pts); i++ {
		if pts[i].Value <= pts[i-1].Value || pts[i].Fraction <= pts[i-1].Fraction {
			t.Fatalf("CDF not increasing at %d: %v then %v", i, pts[i-1], pts[i])
		}
	}
	if last := pts[len(pts)-1]; last.Fraction != 1 || last.Value != h.Max() {
		t.Errorf("CDF ends at %v, want fraction 1 at max %v", last, h.Max())
	}
}
