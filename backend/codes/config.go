package codes

import "time"

// MaxValidity is the longest a code may be valid.
const MaxValidity = 60 * 24 * time.Hour
