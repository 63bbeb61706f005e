package careteam

// Pressure is the pressure a technique is applied with.
type Pressure string

// The pressures, LIGHT < MEDIUM < FIRM.
const (
	PressureLight  Pressure = "LIGHT"
	PressureMedium Pressure = "MEDIUM"
	PressureFirm   Pressure = "FIRM"
)

// rank orders pressures; an unknown pressure ranks above FIRM so that it
// never passes a limit.
func (p Pressure) rank() int {
	switch p {
	case PressureLight:
		return 1
	case PressureMedium:
		return 2
	case PressureFirm:
		return 3
	}
	return 4
}

// Treatment is one technique applied to one body region with a pressure:
// what a session plans and a note records, and what precautions judge.
type Treatment struct {
	Region    BodyRegion `json:"region"`
	Technique Technique  `json:"technique"`
	Pressure  Pressure   `json:"pressure"`
}

// exceeds reports whether p is above limit. An unknown pressure exceeds
// every limit, and an unknown limit allows nothing: the gate fails closed.
func exceeds(p, limit Pressure) bool {
	return limit.rank() > PressureFirm.rank() || p.rank() > limit.rank()
}
