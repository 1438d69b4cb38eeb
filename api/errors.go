package api

import (
	"errors"
	"net/http"
)

// Error codes. They are part of the API: scripts match on them, so they
// never change meaning.
const (
	CodeInvalidParameter    = "InvalidParameter"     // a field is malformed or out of range
	CodeInvalidSubnet       = "InvalidSubnet"        // a CIDR is unusable or an address is outside every subnet
	CodeAddressInUse        = "AddressInUse"         // an address, device index or port is taken
	CodeNotFound            = "NotFound"             // no object with that id or name
	CodeUnauthorized        = "Unauthorized"         // the caller's uid may not do this
	CodeIncorrectState      = "IncorrectState"       // the object is not in a state that allows this
	CodeDependencyViolation = "DependencyViolation"  // other objects still use this one
	CodeAddressLimit        = "AddressLimitExceeded" // a pool or subnet has no free address
	CodeDataPath            = "DataPathRefused"      // the data path refused the new configuration
	CodeInternal            = "InternalError"        // the store or the host failed
	CodeConflict            = "Conflict"             // other writers changed the store under the operation, retries ran out
)

// Sentinels for callers that test with errors.Is: every *Error unwraps to
// the sentinel of its code.
var (
	ErrInvalidParameter    = errors.New(CodeInvalidParameter)
	ErrInvalidSubnet       = errors.New(CodeInvalidSubnet)
	ErrAddressInUse        = errors.New(CodeAddressInUse)
	ErrNotFound            = errors.New(CodeNotFound)
	ErrUnauthorized        = errors.New(CodeUnauthorized)
	ErrIncorrectState      = errors.New(CodeIncorrectState)
	ErrDependencyViolation = errors.New(CodeDependencyViolation)
	ErrAddressLimit        = errors.New(CodeAddressLimit)
	ErrDataPath            = errors.New(CodeDataPath)
	ErrInternal            = errors.New(CodeInternal)
	ErrStoreConflict       = errors.New(CodeConflict)
)

var sentinels = map[string]error{
	CodeInvalidParameter:    ErrInvalidParameter,
	CodeInvalidSubnet:       ErrInvalidSubnet,
	CodeAddressInUse:        ErrAddressInUse,
	CodeNotFound:            ErrNotFound,
	CodeUnauthorized:        ErrUnauthorized,
	CodeIncorrectState:      ErrIncorrectState,
	CodeDependencyViolation: ErrDependencyViolation,
	CodeAddressLimit:        ErrAddressLimit,
	CodeDataPath:            ErrDataPath,
	CodeInternal:            ErrInternal,
	CodeConflict:            ErrStoreConflict,
}

// Error is the typed error of every control operation. Code is one of the
// Code* constants; Message names the field and the value that were wrong.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Cause is the underlying error, when there is one; it never crosses
	// the wire.
	Cause error `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the sentinel of the code and, when there is one, the
// underlying cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if s, ok := sentinels[e.Code]; ok {
		errs = append(errs, s)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// HTTPStatus is the status the API answers with for the error.
func (e *Error) HTTPStatus() int {
	switch e.Code {
	case CodeNotFound:
		return http.StatusNotFound
	case CodeUnauthorized:
		return http.StatusForbidden
	case CodeIncorrectState, CodeDependencyViolation, CodeAddressInUse, CodeConflict:
		return http.StatusConflict
	case CodeInternal, CodeDataPath:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

// ErrorBody is the JSON shape of every API error.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// AsError converts any error to an *Error (InternalError for foreign ones).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error(), Cause: err}
}

// Sentinel returns the sentinel error of code (ErrNotFound for NotFound),
// nil for an unknown code.
func Sentinel(code string) error { return sentinels[code] }
