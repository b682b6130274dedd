package store

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

// plantBatch fills pts with one poll cycle of n sensors at second i: what
// one Append receives in the demo (60 sensors at 1 Hz). Gateways poll on
// their own clock, so timestamps jitter by a few milliseconds; values are
// register counts × 0.01 doing a random walk, as Modbus converters produce,
// and every tenth sensor is a discrete state (valve, SIS).
func plantBatch(pts []Point, ids []string, walk []int32, r *rand.Rand, i int) {
	t0 := ms(base) + int64(i)*1000
	for k := range pts {
		q, v := model.Good, 0.0
		if k%10 == 9 {
			if r.IntN(3600) == 0 {
				walk[k] ^= 1
			}
			v = float64(walk[k])
		} else {
			walk[k] += int32(r.IntN(7)) - 3
			v = float64(walk[k]) * 0.01
		}
		if r.IntN(10000) == 0 { // now and then a timeout
			q, v = model.Bad, math.NaN()
		}
		pts[k] = Point{Sensor: ids[k], TS: t0 + int64(r.IntN(30)), Value: v, Quality: q}
	}
}

func plant(n int) ([]string, []int32) {
	ids := make([]string, n)
	walk := make([]int32, n)
	for k := range ids {
		ids[k] = fmt.Sprintf("e%02d-S%03d", k/10, k)
		walk[k] = int32(1000 + 50*k)
	}
	return ids, walk
}

// BenchmarkAppend appends 60-point batches, one per simulated second.
// "durable" is what Append does (commit + fsync of the log); "nosync" shows
// the cost of the fsync.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		b.Run(c.name, func(b *testing.B) {
			s := open(b, Options{noSync: c.noSync})
			ids, walk := plant(60)
			pts := make([]Point, 60)
			r := rand.New(rand.NewPCG(1, 2))
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				plantBatch(pts, ids, walk, r, i)
				i++
				if err := s.Append(ctx, pts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(i*len(pts))/b.Elapsed().Seconds(), "points/s")
			b.ReportMetric(float64(s.Stats().Syncs)/float64(i), "fsyncs/op")
		})
	}
}

// BenchmarkHistory reads one sensor's day at 1 Hz as 1-minute buckets
// (1440 buckets from 86 400 values, half in blocks, half in the head).
func BenchmarkHistory(b *testing.B) {
	s := open(b, Options{noSync: true})
	ids, walk := plant(2)
	pts := make([]Point, 2)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 86400 {
		plantBatch(pts, ids, walk, r, i)
		if err := s.Append(context.Background(), pts); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h, err := s.History(context.Background(), ids[0], base, base.Add(24*time.Hour), time.Minute)
		if err != nil || len(h) != 1440 {
			b.Fatalf("%d buckets, %v", len(h), err)
		}
	}
}

var loadDays = flag.Float64("store.load-days", 0, "TestDiskPerDay: load this many days of the 60-sensor plant and report the disk it takes")

// TestDiskPerDay measures the disk that a day of the demo plant (60 sensors
// at 1 Hz) takes in blocks. Off by default (about a minute per day loaded):
//
//	go test -run TestDiskPerDay -store.load-days 2 -v ./internal/store/
func TestDiskPerDay(t *testing.T) {
	if *loadDays <= 0 {
		t.Skip("set -store.load-days to run")
	}
	s := open(t, Options{noSync: true})
	ids, walk := plant(60)
	pts := make([]Point, 60)
	r := rand.New(rand.NewPCG(1, 2))
	seconds := int(*loadDays * 86400)
	start := time.Now()
	for i := range seconds {
		plantBatch(pts, ids, walk, r, i)
		if err := s.Append(context.Background(), pts); err != nil {
			t.Fatal(err)
		}
	}
	loaded := time.Since(start)
	if err := s.db.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	var blockBytes, samples, seconds2 int64
	for _, b := range s.db.Blocks() {
		m := b.Meta()
		samples += int64(m.Stats.NumSamples)
		seconds2 += (m.MaxTime - m.MinTime) / 1000
		blockBytes += b.Size()
	}
	walBytes := dirSize(t, filepath.Join(s.opts.Dir, "wal"))
	perSample := float64(blockBytes) / float64(samples)
	perDay := perSample * 60 * 86400 * (1 + 0.0001) // the rare quality samples
	t.Logf("loaded %d points in %s (%.0f points/s without fsync)", seconds*60, loaded.Round(time.Millisecond), float64(seconds*60)/loaded.Seconds())
	t.Logf("blocks: %d, %.1f h, %d samples, %d bytes: %.2f bytes/sample", len(s.db.Blocks()), float64(seconds2)/3600, samples, blockBytes, perSample)
	t.Logf("per day (60 sensors at 1 Hz): %.1f MiB; 30 days: %.2f GiB; WAL now %.1f MiB (bounded by ~3 h of data)",
		perDay/(1<<20), perDay*30/(1<<30), float64(walBytes)/(1<<20))
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
