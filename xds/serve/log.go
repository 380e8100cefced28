package serve

import "go.uber.org/zap"

// zapCacheLogger adapts zap to go-control-plane's log.Logger. The cache's
// chatter (every watch opened and answered) goes to debug. Its warnings go
// to info: the usual one, "ADS mode: not responding to request", is the
// normal moment between a new cluster or listener and the node asking for
// its endpoints or secrets by their new names.
type zapCacheLogger struct{ l *zap.Logger }

func (z zapCacheLogger) Debugf(format string, args ...any) { z.l.Sugar().Debugf(format, args...) }
func (z zapCacheLogger) Infof(format string, args ...any)  { z.l.Sugar().Debugf(format, args...) }
func (z zapCacheLogger) Warnf(format string, args ...any)  { z.l.Sugar().Infof(format, args...) }
func (z zapCacheLogger) Errorf(format string, args ...any) { z.l.Sugar().Errorf(format, args...) }
