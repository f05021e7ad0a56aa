package tokenizer

// DateTokenCount is the exact number of tokens of a date shape's range,
// held to no floor.
func DateTokenCount(s Shape) (int64, error) {
	d, err := buildDateShape(s)
	if err != nil {
		return 0, err
	}
	return d.domain, nil
}
