package telemetry

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeStatus(t *testing.T) {
	tests := []struct {
		payload string
		want    Status
		reason  Reason // 0: accepted
	}{
		{`{"state":"online","boot":"2f9c","ts":1732442400123}`, Status{State: "online", Boot: "2f9c", TS: 1732442400123}, 0},
		{`{"ts":1732442400123,"boot":"2f9c","state":"offline","fw":"1.2"}`, Status{State: "offline", Boot: "2f9c", TS: 1732442400123}, 0},
		{` {"state":"\u006fnline","boot":"b\n","ts":1.7e12,"extra":{"a":[1]}} `, Status{State: "online", Boot: "b\n", TS: 1700000000000}, 0},
		{`{"state":"online","state":"offline","boot":"b","ts":1}`, Status{State: "offline", Boot: "b", TS: 1}, 0},
		{`{"state":"online","boot":"b","ts":-1}`, Status{State: "online", Boot: "b", TS: -1}, 0},
		{`{"state":"online","boot":"b","ts":1,"dropped":42}`, Status{State: "online", Boot: "b", TS: 1, Dropped: 42}, 0},
		{`{"state":"online","boot":"b","ts":1,"dropped":"many"}`, Status{State: "online", Boot: "b", TS: 1}, 0},
		{`{"state":"online","boot":"b","ts":1`, Status{}, ReasonInvalidJSON},
		{`online`, Status{}, ReasonInvalidJSON},
		{``, Status{}, ReasonInvalidJSON},
		{`null`, Status{}, ReasonMalformedMessage},
		{`["online"]`, Status{}, ReasonMalformedMessage},
		{`{"boot":"b","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":"Online","boot":"b","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":"","boot":"b","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":1,"boot":"b","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","boot":"","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","boot":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0","ts":1}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","boot":"b"}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","boot":"b","ts":"1"}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","boot":"b","ts":1.5}`, Status{}, ReasonMalformedMessage},
		{`{"state":"online","boot":"b","ts":9223372036854775808}`, Status{}, ReasonMalformedMessage},
	}
	for _, tt := range tests {
		got, err := DecodeStatus([]byte(tt.payload))
		if tt.reason != 0 {
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.reason {
				t.Errorf("DecodeStatus(%s) = %+v, %v; want %s", tt.payload, got, err, tt.reason)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("DecodeStatus(%s) = %+v, %v; want %+v", tt.payload, got, err, tt.want)
		}
	}
}

func TestAppendStatus(t *testing.T) {
	s := Status{State: StateOffline, Boot: "2f9c\"…", TS: 1732442400123}
	got := string(AppendStatus(nil, s))
	if want := `{"state":"offline","boot":"2f9c\"…","ts":1732442400123}`; got != want {
		t.Errorf("AppendStatus = %s, want %s", got, want)
	}
	back, err := DecodeStatus([]byte(got))
	if err != nil || back != s {
		t.Errorf("DecodeStatus(AppendStatus(%+v)) = %+v, %v", s, back, err)
	}
}

// FuzzStatus checks DecodeStatus against encoding/json and that every status
// it accepts encodes and decodes back to itself.
func FuzzStatus(f *testing.F) {
	f.Add([]byte(`{"state":"online","boot":"2f9c","ts":1732442400123}`))
	f.Add([]byte(`{"state":"offline","boot":"b\u00e9","ts":1.7e12,"x":[{}]}`))
	f.Add([]byte(`{"state":"online","boot":"b","ts":-0}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := DecodeStatus(payload)
		want, wantReason := refDecodeStatus(payload)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason != wantReason {
				t.Fatalf("DecodeStatus(%q) = %v; reference says %v", payload, err, wantReason)
			}
			return
		}
		if wantReason != 0 || got != want {
			t.Fatalf("DecodeStatus(%q) = %+v; reference says %+v, %v", payload, got, want, wantReason)
		}
		back, err := DecodeStatus(AppendStatus(nil, got))
		if err != nil || back != got {
			t.Fatalf("round trip of %+v gave %+v, %v", got, back, err)
		}
	})
}

func refDecodeStatus(payload []byte) (Status, Reason) {
	if !json.Valid(payload) {
		return Status{}, ReasonInvalidJSON
	}
	obj, ok := refObject(payload)
	if !ok {
		return Status{}, ReasonMalformedMessage
	}
	var s Status
	if s.State, _ = refString(obj["state"]); s.State != "online" && s.State != "offline" {
		return Status{}, ReasonMalformedMessage
	}
	if s.Boot, ok = refString(obj["boot"]); !ok || s.Boot == "" || len(s.Boot) > 64 {
		return Status{}, ReasonMalformedMessage
	}
	ts, ok := refInteger(obj["ts"])
	if !ok || !ts.IsInt64() {
		return Status{}, ReasonMalformedMessage
	}
	s.TS = ts.Int64()
	return s, 0
}
