package threat

import "time"

// SchemaID names the event schema. The JSON Schema file is
// schema/threat-event.v1.json at the repository root.
const SchemaID = "mcc.threat-event/v1"

// FeatureName is the value of Event.Name for every event mcc emits.
const FeatureName = "MobileClientCertificates"

// Mode is how a fusion set enforces: see docs/ARCHITECTURE.md "Modes".
type Mode string

const (
	// ModeDefense blocks failing requests.
	ModeDefense Mode = "defense"
	// ModeDetection never blocks (except fail-safe bans); it reports.
	ModeDetection Mode = "detection"
)

// Action is what the gateway did with the request that produced an event.
type Action string

const (
	ActionBlocked  Action = "blocked"
	ActionReported Action = "reported"
)

// Gateway names.
const (
	GatewayCaddy = "caddy"
	GatewayEnvoy = "envoy"
)

// Event is one threat event, schema mcc.threat-event/v1. Field names follow the
// mobile Threat-Event vocabulary. It never carries private keys, bundle
// passwords or the whole certificate PEM.
type Event struct {
	Schema string    `json:"schema"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`

	Name                    string         `json:"name"`
	ReasonCode              Reason         `json:"reasonCode"`
	ReasonData              map[string]any `json:"reasonData,omitempty"`
	Ref                     string         `json:"ref,omitempty"`
	CurrentThreatEventScore int            `json:"currentThreatEventScore"`
	ThreatEventsScore       int            `json:"threatEventsScore"`

	// Context keys.
	Message         string `json:"message,omitempty"`
	FailSafeEnforce bool   `json:"failSafeEnforce"`
	ExternalID      string `json:"externalID,omitempty"`
	FusedAppToken   string `json:"fusedAppToken,omitempty"`
	BuildDate       string `json:"buildDate,omitempty"`
	BuildUser       string `json:"buildUser,omitempty"`
	BuildHost       string `json:"buildHost,omitempty"`
	SDKVersion      string `json:"sdkVersion,omitempty"`
	// Device holds the device context keys (deviceID, osVersion, ...) that the
	// fusion set maps from request headers. They are flattened into the
	// top-level JSON object by MarshalJSON.
	Device map[string]string `json:"-"`

	// Gateway keys.
	FusionSet   string    `json:"fusionSet"`
	Mode        Mode      `json:"mode"`
	Action      Action    `json:"action"`
	Gateway     string    `json:"gateway"`
	Node        string    `json:"node,omitempty"`
	ClientIP    string    `json:"clientIP,omitempty"`
	SNI         string    `json:"sni,omitempty"`
	Host        string    `json:"host,omitempty"`
	Method      string    `json:"method,omitempty"`
	Path        string    `json:"path,omitempty"`
	Certificate *CertInfo `json:"certificate,omitempty"`
}

// CertInfo describes the presented leaf certificate, public parts only.
type CertInfo struct {
	Serial    string    `json:"serial"`
	SHA256    string    `json:"sha256"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	AppID     string    `json:"appID,omitempty"`
	BuildID   string    `json:"buildID,omitempty"`
}

// DeviceKeys are the device context keys a fusion set may map from request
// headers. They are the only keys allowed in Event.Device.
var DeviceKeys = []string{
	"deviceID", "osVersion", "deviceModel", "deviceManufacturer", "deviceBrand",
	"devicePlatform", "timeZone", "carrierName", "appVersion", "locale",
}
