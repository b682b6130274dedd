package alerting

import (
	"context"
	"testing"
	"time"

	"hazardwatch/internal/model"
)

// BenchmarkManagerDurable: alarm events per second through the Manager
// into the ALARMS stream on the embedded NATS server with every write
// synced (SyncAlways), as the centre runs it. "batch" is the Manager's
// group commit; "each" makes every event durable alone (MaxBatch 1), the
// baseline. Transitions alternate raise and return on the demo's
// non-gas sensors, one reading every two minutes of their own time (so
// nothing chatters), and are submitted as the pipeline does, from one
// goroutine; the benchmark ends when the last event is durable and
// pushed.
//
//	go test -run '^$' -bench ManagerDurable -benchtime 20000x -count 6 ./alerting
func BenchmarkManagerDurable(b *testing.B) {
	for _, c := range []struct {
		name  string
		batch int
	}{{"batch", 0}, {"each", 1}} {
		b.Run(c.name, func(b *testing.B) {
			log, _, closeBus := openBus(b, b.TempDir())
			defer closeBus()
			m, err := New(Options{Plant: demo.Plant, Rules: demo.Rules, Log: log, Alarms: quietAlarms(), MaxBatch: c.batch, Queue: 4096})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- m.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-errc; err != nil {
					b.Error(err)
				}
			}()
			<-m.Ready()
			var sensors []int32
			var limits []float64
			for i, s := range demo.Plant.Sensors {
				if l := demo.Rules[i].Limits[model.H]; l.Set && !s.Kind.IsGas() {
					sensors, limits = append(sensors, int32(i)), append(limits, l.Value)
				}
			}
			evs, unsub := m.Subscribe(b.N + 16)
			defer unsub()
			base := time.Now().Add(-365 * 24 * time.Hour)
			b.ResetTimer()
			start := time.Now()
			go func() {
				for i := range b.N {
					k := i % len(sensors)
					round := i / len(sensors)
					t := model.Transition{Sensor: sensors[k], Rule: model.ThresholdHigh, Class: model.ClassAlarm,
						TS: base.Add(time.Duration(round) * 2 * time.Minute).UnixMilli()}
					if round%2 == 0 {
						t.Active, t.Level, t.Limit, t.Value = true, model.L1, limits[k], limits[k]*1.01
					} else {
						t.Limit, t.Value = limits[k], limits[k]*0.9
					}
					if err := m.Submit(ctx, t); err != nil {
						return
					}
				}
			}()
			for range b.N {
				if _, ok := <-evs; !ok {
					b.Fatal("subscription dropped")
				}
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
		})
	}
}
