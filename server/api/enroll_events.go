package api

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

// report stores the event of a refused enrollment or renewal that the
// fusion engine did not make itself (a revoked certificate, a limit, a
// second renewal): the engine builds it from the request, as a gateway
// reports a failure it observed, so it has the same fields, scores and
// certificate description as every other event.
func (a *API) report(ctx context.Context, p *presented, reason threat.Reason, data map[string]any) {
	req := *p.req
	req.Reason, req.ReasonData = reason, data
	d := p.set.guard.Evaluate(ctx, &req)
	a.storeEvent(ctx, d.Event)
}

// storeEvent stores the event of a refusal in the events table, through
// the same checks as an ingested event. The server refused, whatever the
// set's mode says a gateway would have done, so the action is "blocked".
// A failure is logged, never turned into the answer: the refusal stands.
func (a *API) storeEvent(ctx context.Context, ev *threat.Event) {
	if ev == nil {
		return
	}
	key := ev.FusionSet + "\x00" + string(ev.ReasonCode) + "\x00" + threat.AddressKey(ev.ClientIP, 32, 64)
	if ok, _ := a.refusalEvents.Allow(key); !ok {
		a.Log.Debug("refusal event not stored: over the per-address budget", zap.String("fusionSet", ev.FusionSet),
			zap.String("reasonCode", string(ev.ReasonCode)))
		return
	}
	e := *ev
	e.Action = threat.ActionBlocked
	// The server's clock dates what the server did, whatever time the
	// event was built with.
	e.Time = a.Now().UTC()
	raw, err := e.AppendJSON(nil)
	if err != nil {
		a.Log.Error("encoding an enrollment event", zap.Error(err))
		return
	}
	shape, err := threatEventShape()
	if err != nil {
		a.Log.Error("loading the event schema", zap.Error(err))
		return
	}
	var ps eventProblems
	row := eventRow(shape, raw, "event", a.Now().UTC(), &ps)
	if len(ps.list) > 0 {
		var details []string
		for _, fe := range ps.list {
			details = append(details, fe.Field+": "+fe.Detail)
		}
		a.Log.Error("an enrollment event does not match the event schema", zap.String("problems", strings.Join(details, "; ")))
		return
	}
	if _, err := a.DB.InsertEvents(ctx, []store.Event{row}); err != nil {
		a.Log.Error("storing an enrollment event", zap.Error(err))
	}
}
