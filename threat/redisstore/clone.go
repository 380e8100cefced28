package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/mccgate/mcc/threat"
)

// bannedCountingSource is bannedSource and clone detection's counting in
// one script, so that a request whose set counts certificate uses still
// makes one round trip (threat.CloneCounter).
//
// KEYS: ban1 .. banN, then the certificate's address HyperLogLog, device
// HyperLogLog, reported-levels hash and address sample list (all named by
// the window's start), the set's hashing key and, when the use may ban the
// certificate (threat.CertUse.BanFor), the certificate's ban key.
// ARGV: N, address, device id, max addresses, max devices, the ms left in
// the window (by the gateway's clock, like every expiry here, so clock skew
// between gateways and Redis does not move it), a random candidate hashing
// key, sample size, the ban in ms (0: never ban).
// Returns {longest ban in ms, addresses, devices, report (0|1), sample,
// the certificate's ban in ms (0: none asked for, or under the maxima)}.
//
// The certificate's ban is set like the add script sets one (SET PX, not
// renewing a live ban), under the key Banned checks, so every gateway
// sharing the store refuses the certificate from its next request.
//
// Elements are SHA-1 of the set's random hashing key and the value, not the
// value: Redis hashes HyperLogLog elements with a fixed public seed, so raw
// values would let a client pick device ids (or, from a large IPv6 range,
// prefixes) that land in registers already set and count a farm as a few.
// The first gateway to count stores its candidate key; every gateway then
// uses that one, so they count the same values alike.
//
// level is threat.ClonePolicy.Levels, written in Lua; the store tests hold
// the two to the same reports.
const bannedCountingSource = `
local nban = tonumber(ARGV[1])
local longest = 0
for i = 1, nban do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl > longest then longest = ttl end
end
local addrs, devs, rep, sample, keyk = KEYS[nban + 1], KEYS[nban + 2], KEYS[nban + 3], KEYS[nban + 4], KEYS[nban + 5]
local addr, dev = ARGV[2], ARGV[3]
local maxa, maxd = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl = ARGV[6]
local key = redis.call('GET', keyk)
if not key then
  redis.call('SET', keyk, ARGV[7])
  key = ARGV[7]
end
if addr ~= '' and redis.call('PFADD', addrs, redis.sha1hex(key .. 'a' .. addr)) == 1 then
  redis.call('PEXPIRE', addrs, ttl)
  if redis.call('LLEN', sample) < tonumber(ARGV[8]) then
    redis.call('RPUSH', sample, addr)
    redis.call('PEXPIRE', sample, ttl)
  end
end
if dev ~= '' and redis.call('PFADD', devs, redis.sha1hex(key .. 'd' .. dev)) == 1 then
  redis.call('PEXPIRE', devs, ttl)
end
local a = redis.call('PFCOUNT', addrs)
local d = redis.call('PFCOUNT', devs)
local function level(n, max)
  if max <= 0 or n < max then return 0 end
  local l, t = 1, max * 2
  while n >= t do
    l = l + 1
    t = t * 2
  end
  return l
end
local la, ld = level(a, maxa), level(d, maxd)
local banms, certban = tonumber(ARGV[9]), 0
if banms > 0 and (la > 0 or ld > 0) then
  local bk = KEYS[nban + 6]
  certban = redis.call('PTTL', bk)
  if certban <= 0 then
    redis.call('SET', bk, '1', 'PX', banms)
    certban = banms
  end
end
local r = redis.call('HMGET', rep, 'a', 'd')
local ra, rd = tonumber(r[1] or '0'), tonumber(r[2] or '0')
if la > ra or ld > rd then
  redis.call('HSET', rep, 'a', math.max(la, ra), 'd', math.max(ld, rd))
  redis.call('PEXPIRE', rep, ttl)
  return {longest, a, d, 1, redis.call('LRANGE', sample, 0, -1), certban}
end
return {longest, a, d, 0, {}, certban}
`

var _ threat.CloneCounter = (*Store)(nil)

// newHashKey returns a random candidate for a set's clone hashing key.
func newHashKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// BannedCounting implements threat.CloneCounter in one round trip: the ban
// check and the count in one script. With nothing to count it is Banned.
func (s *Store) BannedCounting(ctx context.Context, ns string, sub threat.Subject, use threat.CertUse, p threat.ClonePolicy) (time.Time, threat.CloneResult, error) {
	if use.CertSHA == "" || !p.Enabled() {
		until, err := s.Banned(ctx, ns, sub)
		return until, threat.CloneResult{}, err
	}
	if !s.br.allow() {
		return time.Time{}, threat.CloneResult{}, ErrUnavailable
	}
	now := use.At
	if now.IsZero() {
		now = s.now()
	}
	start := p.WindowStart(now)
	left := start.Add(p.WindowOrDefault()).Sub(now)
	keys := append(banKeys(ns, sub), cloneKeys(ns, start, use.CertSHA)...)
	nban := len(keys) - 5
	var banMS int64
	if use.BanFor > 0 {
		keys = append(keys, banKey(ns, subjectParts[2], use.CertSHA))
		banMS = millis(use.BanFor)
	}
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	vals, err := s.banCount.Run(ctx, s.client, keys, nban, use.Address, use.DeviceID,
		p.MaxAddresses, p.MaxDevices, millis(left), s.hashKey, threat.CloneSampleSize, banMS).Slice()
	cancel()
	s.br.record(err)
	var res threat.CloneResult
	var ms, certMS int64
	if err == nil {
		ms, certMS, res, err = parseCloneReply(vals)
	}
	if err != nil {
		return time.Time{}, threat.CloneResult{}, fmt.Errorf("redis store: checking bans and counting in %q: %w", ns, err)
	}
	res.WindowStart = start
	var until time.Time
	if ms > 0 {
		until = now.Add(time.Duration(ms) * time.Millisecond)
	}
	if certMS > 0 {
		res.CertBannedUntil = now.Add(time.Duration(certMS) * time.Millisecond)
	}
	return until, res, nil
}

// parseCloneReply reads the script's {ban ms, addresses, devices, report,
// sample, certificate ban ms}.
func parseCloneReply(vals []any) (int64, int64, threat.CloneResult, error) {
	var res threat.CloneResult
	if len(vals) != 6 {
		return 0, 0, res, fmt.Errorf("unexpected reply %v", vals)
	}
	var n [4]int64
	for i := range n {
		v, ok := vals[i].(int64)
		if !ok {
			return 0, 0, res, fmt.Errorf("unexpected reply %v", vals)
		}
		n[i] = v
	}
	certMS, ok := vals[5].(int64)
	if !ok {
		return 0, 0, res, fmt.Errorf("unexpected reply %v", vals)
	}
	res.Addresses, res.Devices, res.Report = int(n[1]), int(n[2]), n[3] == 1
	sample, _ := vals[4].([]any)
	for _, v := range sample {
		if a, ok := v.(string); ok && len(res.Sample) < threat.CloneSampleSize {
			res.Sample = append(res.Sample, a)
		}
	}
	return n[0], certMS, res, nil
}

// cloneKeys are the keys of one certificate's counts in the window that
// starts at start, and the set's hashing key, in the script's order.
func cloneKeys(ns string, start time.Time, certSHA string) []string {
	base := keyPrefix + ns + "}:clone:" + strconv.FormatInt(start.UnixMilli(), 10) + ":"
	v := keyValue(certSHA)
	return []string{base + "addr:" + v, base + "dev:" + v, base + "rep:" + v, base + "sample:" + v, cloneHashKey(ns)}
}

// cloneHashKey holds a set's clone hashing key (see bannedCountingSource).
func cloneHashKey(ns string) string { return keyPrefix + ns + "}:clone:key" }
