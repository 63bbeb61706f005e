package client

import (
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// errorInfo returns the google.rpc.ErrorInfo careteamd attached to err.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "careteam" {
			return info
		}
	}
	return nil
}

// Reason returns why careteamd refused a call (see ErrorReason in
// proto/careteam/v1/errors.proto), or ERROR_REASON_UNSPECIFIED for an error
// that did not come from careteamd. Key off it, not the message.
func Reason(err error) pb.ErrorReason {
	info := errorInfo(err)
	if info == nil {
		return pb.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	return pb.ErrorReason(pb.ErrorReason_value["ERROR_REASON_"+info.GetReason()])
}

// ResumeAfter returns the cursor an ended WatchEvents stream says to
// resume after, if it says one.
func ResumeAfter(err error) (int64, bool) {
	return metadataInt(err, "resume_after_cursor")
}

// OldestCursor returns the oldest retained cursor a CURSOR_PRUNED error
// names.
func OldestCursor(err error) (int64, bool) {
	return metadataInt(err, "oldest_cursor")
}

func metadataInt(err error, key string) (int64, bool) {
	v, ok := errorInfo(err).GetMetadata()[key]
	if !ok {
		return 0, false
	}
	n, perr := strconv.ParseInt(v, 10, 64)
	return n, perr == nil
}
