"""Session plans on the server: the schedule (``schedule``) and its journalled executor (``runner``)."""
