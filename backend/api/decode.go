package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"kluis/controller/jsonkeys"
)

// decodeJSON reads the request body (already limited by the server) into
// dst: a single JSON object, no unknown fields, no trailing data, sent as
// Content-Type application/json (or a +json type): a body without a
// Content-Type, or with another, is 415 unsupported_media_type.
func decodeJSON(r *http.Request, dst any) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the request body must be sent with Content-Type: application/json (none was given)")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the request body must be sent with Content-Type: application/json")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(body, dst)
}

// readBody reads the whole (size-limited) request body: 413 body_too_large
// past the limit, 400 unreadable_body when reading fails.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the request body exceeds %d bytes", mbe.Limit)
		}
		return nil, errorf(http.StatusBadRequest, "unreadable_body", "the request body could not be read")
	}
	return body, nil
}

func decodeBytes(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(http.StatusBadRequest, "empty_body", "a JSON object is required in the request body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "malformed_json", "the request body must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "malformed_json", "unexpected data after the JSON object")
	}
	// Only now, on a body the decoder took (valid, not too deep): it kept
	// the last of a repeated key (matching names ignoring case), where
	// another reader may keep the first. dst is the caller's to drop.
	if key, ok := jsonkeys.Repeated(body); ok {
		return errorf(http.StatusBadRequest, "duplicate_key", "the key %q appears twice in one JSON object (names are matched ignoring case)", key)
	}
	if field, ok := findNUL(reflect.ValueOf(dst), ""); ok {
		// PostgreSQL text refuses NUL ("invalid byte sequence"): refused
		// here for every field of every body, before anything is stored.
		return &Error{Status: http.StatusBadRequest, Code: "invalid_input", Message: "a text field holds a NUL character (\\u0000)",
			Details: map[string]any{"fields": []map[string]string{{"field": field, "message": "holds a NUL character"}}}}
	}
	return nil
}

// findNUL looks through a decoded value for a string holding a NUL byte
// (JSON's \u0000; invalid UTF-8 is already replaced by U+FFFD by
// encoding/json) and returns the JSON name of the first one found.
func findNUL(v reflect.Value, path string) (string, bool) {
	switch v.Kind() {
	case reflect.String:
		return path, strings.IndexByte(v.String(), 0) >= 0
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return "", false
		}
		return findNUL(v.Elem(), path)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := jsonName(f)
			if name == "-" {
				continue
			}
			p := path
			if !f.Anonymous || name != f.Name {
				p = joinPath(path, name)
			}
			if at, ok := findNUL(v.Field(i), p); ok {
				return at, true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return "", false // []byte, json.RawMessage: not text
		}
		for i := 0; i < v.Len(); i++ {
			if at, ok := findNUL(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); ok {
				return at, true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			key := fmt.Sprint(it.Key().Interface())
			if strings.IndexByte(key, 0) >= 0 {
				return path, true
			}
			if at, ok := findNUL(it.Value(), joinPath(path, key)); ok {
				return at, true
			}
		}
	}
	return "", false
}

func jsonName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if tag == "" {
		return f.Name
	}
	return tag
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return errorf(http.StatusBadRequest, "malformed_json", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "malformed_json", "the JSON body ends too early")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return errorf(http.StatusBadRequest, "wrong_type", "the request body must be a JSON object, not %s", typ.Value)
		}
		return errorf(http.StatusBadRequest, "wrong_type", "field %q must be %s, not %s", field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf(http.StatusBadRequest, "unknown_field", "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return errorf(http.StatusBadRequest, "malformed_json", "invalid JSON body: %v", err)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "a " + kind
}
