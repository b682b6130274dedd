package notify

import (
	"testing"
	"time"

	"go.uber.org/goleak"
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
