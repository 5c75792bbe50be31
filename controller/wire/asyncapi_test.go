package wire

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"kluis/hardware"
)

// asyncAPI is the part of docs/asyncapi.yaml the tests read.
type asyncAPI struct {
	AsyncAPI string `yaml:"asyncapi"`
	Channels map[string]struct {
		Publish   *operation `yaml:"publish"`
		Subscribe *operation `yaml:"subscribe"`
	} `yaml:"channels"`
	Components struct {
		Messages map[string]struct {
			Name     string `yaml:"name"`
			Payload  schema `yaml:"payload"`
			Examples []struct {
				Name    string `yaml:"name"`
				Payload any    `yaml:"payload"`
			} `yaml:"examples"`
		} `yaml:"messages"`
		Schemas map[string]schema `yaml:"schemas"`
	} `yaml:"components"`
}

type operation struct {
	Bindings struct {
		MQTT struct {
			QoS    int  `yaml:"qos"`
			Retain bool `yaml:"retain"`
		} `yaml:"mqtt"`
	} `yaml:"bindings"`
	Message struct {
		Ref string `yaml:"$ref"`
	} `yaml:"message"`
}

// schema is the JSON Schema subset the document uses.
type schema struct {
	Ref                  string            `yaml:"$ref"`
	Type                 string            `yaml:"type"`
	Const                any               `yaml:"const"`
	Enum                 []any             `yaml:"enum"`
	Required             []string          `yaml:"required"`
	Properties           map[string]schema `yaml:"properties"`
	AdditionalProperties any               `yaml:"additionalProperties"`
	Items                *schema           `yaml:"items"`
	MinItems             *int              `yaml:"minItems"`
	MaxItems             *int              `yaml:"maxItems"`
	MaxProperties        *int              `yaml:"maxProperties"`
	Minimum              *float64          `yaml:"minimum"`
	Maximum              *float64          `yaml:"maximum"`
	MaxLength            *int              `yaml:"maxLength"`
	Pattern              string            `yaml:"pattern"`
	Format               string            `yaml:"format"`
	Description          string            `yaml:"description"`
}

func loadAsyncAPI(t *testing.T) *asyncAPI {
	t.Helper()
	b, err := os.ReadFile("../../docs/asyncapi.yaml")
	require.NoError(t, err)
	var doc asyncAPI
	require.NoError(t, yaml.Unmarshal(b, &doc))
	require.True(t, strings.HasPrefix(doc.AsyncAPI, "2.6"), "AsyncAPI 2.6 document")
	return &doc
}

// goTypes maps the document's schema names to the Go types they describe.
var goTypes = map[string]reflect.Type{
	"Presence":       reflect.TypeFor[Presence](),
	"Heartbeat":      reflect.TypeFor[Heartbeat](),
	"Event":          reflect.TypeFor[Event](),
	"Ack":            reflect.TypeFor[Ack](),
	"Command":        reflect.TypeFor[Command](),
	"CommandResult":  reflect.TypeFor[CommandResult](),
	"VerifyRequest":  reflect.TypeFor[VerifyRequest](),
	"VerifyResponse": reflect.TypeFor[VerifyResponse](),
	"StaffRequest":   reflect.TypeFor[StaffRequest](),
	"StaffResponse":  reflect.TypeFor[StaffResponse](),
	"BoardHealth":    reflect.TypeFor[BoardHealth](),
	"ChannelState":   reflect.TypeFor[hardware.ChannelState](),
	"CodeSync":       reflect.TypeFor[CodeSync](),
	"CodeEntry":      reflect.TypeFor[CodeEntry](),
	"Address":        reflect.TypeFor[Address](),
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func TestAsyncAPIChannelsMatchKinds(t *testing.T) {
	doc := loadAsyncAPI(t)
	var channels []string
	for name, ch := range doc.Channels {
		channels = append(channels, name)
		kind := Kind(strings.TrimPrefix(name, Root+"/{device}/"))
		require.True(t, kind.Valid(), "channel %s is no wire kind", name)
		op := ch.Publish
		if !kind.FromDevice() {
			op = ch.Subscribe
			assert.Nil(t, ch.Publish, "%s: the backend publishes it (subscribe operation)", name)
		} else {
			assert.Nil(t, ch.Subscribe, "%s: devices publish it (publish operation)", name)
		}
		require.NotNil(t, op, name)
		assert.Equal(t, int(kind.QoS()), op.Bindings.MQTT.QoS, name)
		assert.Equal(t, kind.Retained(), op.Bindings.MQTT.Retain, name)
		msgName := strings.TrimPrefix(op.Message.Ref, "#/components/messages/")
		msg, ok := doc.Components.Messages[msgName]
		require.True(t, ok, "%s refers to a missing message %s", name, op.Message.Ref)
		assert.Equal(t, string(kind), msg.Name, name)
		m, err := newMessage(kind)
		require.NoError(t, err)
		assert.Equal(t, reflect.TypeOf(m).Elem().Name(), msgName, "%s carries the Go type of the same name", name)
	}
	var kinds []string
	for _, k := range Kinds() {
		kinds = append(kinds, Root+"/{device}/"+string(k))
	}
	assert.ElementsMatch(t, kinds, channels, "one channel per wire kind and no other")
	assert.Len(t, doc.Components.Messages, len(Kinds()), "one message per kind")
}

func TestAsyncAPISchemasMatchGoTypes(t *testing.T) {
	doc := loadAsyncAPI(t)
	for name, typ := range goTypes {
		s, ok := doc.Components.Schemas[name]
		if !assert.True(t, ok, "no schema %s", name) {
			continue
		}
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		assert.Equal(t, jsonFields(typ), props, "schema %s has the JSON fields of %s", name, typ)
		assert.Equal(t, false, s.AdditionalProperties, "schema %s is closed, as Decode is", name)
	}
	for _, k := range Kinds() {
		m, _ := newMessage(k)
		name := reflect.TypeOf(m).Elem().Name()
		s := doc.Components.Schemas[name]
		assert.ElementsMatch(t, required[k], s.Required, "schema %s requires what Decode requires", name)
		msg := doc.Components.Messages[name]
		assert.Equal(t, "#/components/schemas/"+name, msg.Payload.Ref, name)
	}
	for key, keys := range nestedRequired {
		name := map[string]string{"addr": "Address", "codes": "CodeSync"}[key]
		require.NotEmpty(t, name, key)
		assert.ElementsMatch(t, keys, doc.Components.Schemas[name].Required, name)
	}
	// Enumerations agree with the Go lists.
	enum := func(schemaName, prop string) []string {
		var out []string
		for _, v := range doc.Components.Schemas[schemaName].Properties[prop].Enum {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	strs := func(v any) []string {
		var out []string
		rv := reflect.ValueOf(v)
		for i := range rv.Len() {
			out = append(out, rv.Index(i).String())
		}
		return out
	}
	assert.ElementsMatch(t, strs(EventKinds()), enum("Event", "kind"))
	assert.ElementsMatch(t, strs(AlarmKinds()), enum("Event", "alarm"))
	assert.ElementsMatch(t, strs(CommandKinds()), enum("Command", "kind"))
	assert.ElementsMatch(t, strs(CommandStatuses()), enum("CommandResult", "status"))
	assert.ElementsMatch(t, strs(VerifyResults()), enum("VerifyResponse", "result"))
	assert.ElementsMatch(t, strs(StaffOps()), enum("StaffRequest", "op"))
	assert.ElementsMatch(t, strs(StaffOps()), enum("StaffResponse", "op"))
	assert.ElementsMatch(t, strs(StaffResults()), enum("StaffResponse", "result"))
}

func TestAsyncAPIExamplesDecodeAndValidate(t *testing.T) {
	doc := loadAsyncAPI(t)
	v := validator{schemas: doc.Components.Schemas}
	n := 0
	for name, msg := range doc.Components.Messages {
		require.NotEmpty(t, msg.Examples, "message %s has no example", name)
		for _, ex := range msg.Examples {
			b, err := json.Marshal(ex.Payload)
			require.NoError(t, err)
			topic := Root + "/kortrijk-01/" + msg.Name
			_, m, err := Decode(topic, b)
			assert.NoError(t, err, "%s example %s: %s", name, ex.Name, b)
			if m != nil {
				assert.Equal(t, name, reflect.TypeOf(m).Elem().Name())
			}
			var generic any
			require.NoError(t, json.Unmarshal(b, &generic))
			assert.NoError(t, v.validate(msg.Payload, generic, name), "%s example %s", name, ex.Name)
			n++
		}
	}
	assert.GreaterOrEqual(t, n, len(Kinds()))
}

// What Encode produces validates against the document's schema.
func TestAsyncAPISchemasAcceptEncodedMessages(t *testing.T) {
	doc := loadAsyncAPI(t)
	v := validator{schemas: doc.Components.Schemas}
	extra := []Message{
		&Command{ID: "c2", Kind: CmdCodeSync, Issued: t0, Expires: t0.Add(time.Hour), Codes: &CodeSync{Version: 3, Full: true,
			Entries: []CodeEntry{{DocumentID: "d", Addr: Address{Board: 1, Channel: 2}, Expires: t0, QRHash: "h"}}}},
		&Event{ID: "e9", Kind: EvAlarm, Alarm: AlarmBoardUnreachable, Board: ptr(3), At: t0},
		&VerifyResponse{ID: "r", Result: VerifyOK, DocumentID: "d", Addr: &Address{}, Slot: ptr(4)},
	}
	for _, m := range append(samples(), extra...) {
		b, err := Encode(m)
		require.NoError(t, err)
		var generic any
		require.NoError(t, json.Unmarshal(b, &generic))
		name := reflect.TypeOf(m).Elem().Name()
		assert.NoError(t, v.validate(schema{Ref: "#/components/schemas/" + name}, generic, name), "%s", b)
	}
	// The validator itself refuses what it should.
	bad := map[string]any{"v": 1.0, "state": "online", "extra": true}
	assert.Error(t, v.validate(schema{Ref: "#/components/schemas/Presence"}, bad, "Presence"))
	bad = map[string]any{"v": 2.0, "state": "online"}
	assert.Error(t, v.validate(schema{Ref: "#/components/schemas/Presence"}, bad, "Presence"))
	bad = map[string]any{"v": 1.0, "state": "asleep"}
	assert.Error(t, v.validate(schema{Ref: "#/components/schemas/Presence"}, bad, "Presence"))
	bad = map[string]any{"v": 1.0, "ids": []any{}}
	assert.Error(t, v.validate(schema{Ref: "#/components/schemas/Ack"}, bad, "Ack"))
	bad = map[string]any{"v": 1.0, "id": "x", "result": "ok", "addr": map[string]any{"board": 0.0, "channel": 48.0}}
	assert.Error(t, v.validate(schema{Ref: "#/components/schemas/VerifyResponse"}, bad, "VerifyResponse"))
}

// validator checks a decoded JSON value against the schema subset above.
type validator struct{ schemas map[string]schema }

func (v validator) validate(s schema, x any, path string) error {
	if s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
		target, found := v.schemas[name]
		if !ok || !found {
			return fmt.Errorf("%s: unresolved $ref %s", path, s.Ref)
		}
		return v.validate(target, x, path)
	}
	if s.Const != nil && fmt.Sprint(s.Const) != fmt.Sprint(x) {
		return fmt.Errorf("%s: %v is not %v", path, x, s.Const)
	}
	if len(s.Enum) > 0 && !slices.ContainsFunc(s.Enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(x) }) {
		return fmt.Errorf("%s: %v not in %v", path, x, s.Enum)
	}
	switch s.Type {
	case "object":
		obj, ok := x.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", path)
		}
		for _, r := range s.Required {
			if _, ok := obj[r]; !ok {
				return fmt.Errorf("%s: missing %s", path, r)
			}
		}
		if s.MaxProperties != nil && len(obj) > *s.MaxProperties {
			return fmt.Errorf("%s: too many properties", path)
		}
		for k, val := range obj {
			if ps, ok := s.Properties[k]; ok {
				if err := v.validate(ps, val, path+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := s.AdditionalProperties.(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: unknown property %s", path, k)
				}
			case map[string]any:
				b, _ := yaml.Marshal(ap)
				var sub schema
				if err := yaml.Unmarshal(b, &sub); err != nil {
					return err
				}
				if err := v.validate(sub, val, path+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		arr, ok := x.([]any)
		if !ok {
			return fmt.Errorf("%s: not an array", path)
		}
		if s.MinItems != nil && len(arr) < *s.MinItems || s.MaxItems != nil && len(arr) > *s.MaxItems {
			return fmt.Errorf("%s: %d items out of bounds", path, len(arr))
		}
		for i, item := range arr {
			if s.Items != nil {
				if err := v.validate(*s.Items, item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case "string":
		str, ok := x.(string)
		if !ok {
			return fmt.Errorf("%s: not a string", path)
		}
		if s.MaxLength != nil && len(str) > *s.MaxLength {
			return fmt.Errorf("%s: too long", path)
		}
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", path, str, s.Pattern)
		}
		switch s.Format {
		case "date-time":
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				return fmt.Errorf("%s: not a date-time", path)
			}
		case "date":
			if _, err := time.Parse(time.DateOnly, str); err != nil {
				return fmt.Errorf("%s: not a date", path)
			}
		}
	case "integer", "number":
		f, ok := x.(float64)
		if !ok || s.Type == "integer" && f != float64(int64(f)) {
			return fmt.Errorf("%s: not an %s", path, s.Type)
		}
		if s.Minimum != nil && f < *s.Minimum || s.Maximum != nil && f > *s.Maximum {
			return fmt.Errorf("%s: %v out of range", path, f)
		}
	case "boolean":
		if _, ok := x.(bool); !ok {
			return fmt.Errorf("%s: not a boolean", path)
		}
	case "":
	default:
		return fmt.Errorf("%s: schema type %s unsupported by the test", path, s.Type)
	}
	return nil
}
