package notify

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"hazardwatch/internal/metrictest"
	"hazardwatch/internal/testclock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the demo's alarm time: 10:02 in China.
var t0 = time.Date(2025, 3, 6, 10, 2, 0, 0, DefaultLocation)

// chlorine is an L2 toxic gas alarm at the demo's chlorine tank farm,
// escalated to the county 25 minutes after it was raised.
func chlorine() Notification {
	return Notification{
		AlarmID: "e01-GT-101.high.1", Event: EventEscalated, Seq: 42,
		At: t0.Add(25 * time.Minute), Due: t0.Add(25 * time.Minute), RaisedAt: t0,
		Priority: 1, Class: "alarm", Level: "L2", State: "unack_active",
		Enterprise: "e01", EnterpriseName: "示范县恒安氯碱化工有限公司", Park: "p01", County: "c01",
		HazardSource: "e01-hs1", HazardSourceName: "液氯储罐区",
		Sensor: "e01-GT-101", SensorName: "液氯储罐区东侧氯气检测器", Gateway: "gw-e01-1",
		Kind: "gas_toxic", Gas: "氯气", GasEN: "chlorine",
		Step: StepCounty,
		Recipients: []Recipient{
			{Name: "赵县长", Phone: "13900002001", Role: "县应急值班"},
			{Name: "钱值班", Phone: "13900002002", Role: "县应急值班"},
		},
		Message: "液氯储罐区东侧氯气检测器有毒气体二级报警 (HH)：2.4 ppm，报警值 2 ppm / e01-GT-101 gas_toxic HH alarm: 2.4 ppm, limit 2 ppm",
		Value:   2.4, Limit: 2, Unit: "ppm",
	}
}

// fake is a Notifier that answers from a script: the i-th call gets
// script[i] (the last one again after the end); it records each call's
// message and time.
type fake struct {
	name   string
	script []fakeAnswer
	block  chan struct{} // when set, each call waits for a value (or ctx)

	mu    sync.Mutex
	calls []fakeCall
}

type fakeAnswer struct {
	retry bool
	err   error
}

type fakeCall struct {
	m  Message
	at time.Time
}

var errFlaky = errors.New("provider busy")

func (f *fake) Name() string { return f.name }

func (f *fake) Notify(ctx context.Context, m Message) (bool, error) {
	f.mu.Lock()
	i := len(f.calls)
	f.calls = append(f.calls, fakeCall{m, time.Now()})
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	if len(f.script) == 0 {
		return false, nil
	}
	a := f.script[min(i, len(f.script)-1)]
	return a.retry, a.err
}

func (f *fake) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fake) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, c := range f.calls {
		ids = append(ids, c.m.ID)
	}
	return ids
}

// newTest builds a Dispatcher on its own registry; mod adjusts the
// options. Sleep returns at once unless mod sets it.
func newTest(t testing.TB, mod func(*Options)) (*Dispatcher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := Options{Registerer: reg, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Jitter: func() float64 { return 0.5 }}
	if mod != nil {
		mod(&o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

// metric reads one series by name and label pairs, as a scrape shows it;
// 0 when absent.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	return metrictest.Value(t, reg, name, labels...)
}

// results reads hw_notifications_total for the outcomes that are not 0.
func results(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for o := outSent; o < numOutcomes; o++ {
		if v := metric(t, reg, "hw_notifications_total", "result", o.String()); v != 0 {
			out[o.String()] = v
		}
	}
	return out
}

// clock is a fake clock whose Sleep moves it instead of waiting: for
// tests outside a synctest bubble (those with real servers).
type clock struct{ *testclock.Clock }

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	c.Add(d)
	return ctx.Err()
}
